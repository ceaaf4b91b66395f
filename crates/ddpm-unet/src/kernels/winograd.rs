//! 3×3 "same" convolutions (stride 1, padding 1) by Winograd's minimal filtering
//! F(2×2, 3×3) (Lavin & Gray, *Fast Algorithms for Convolutional Neural Networks*, 2016).
//!
//! The output is cut into 2×2 tiles; tile `(ty, tx)` reads the 4×4 input patch at rows
//! `2ty − 1 ..`, columns `2tx − 1 ..` (zero outside the image). With
//!
//! ```text
//! Bᵀ = [1  0 −1  0]     G = [ 1    0    0 ]     Aᵀ = [1 1  1  0]
//!      [0  1  1  0]         [ ½    ½    ½ ]          [0 1 −1 −1]
//!      [0 −1  1  0]         [ ½   −½    ½ ]
//!      [0  1  0 −1]         [ 0    0    1 ]
//! ```
//!
//! the tile of output channel o is `Aᵀ [Σ_c (G W[o][c] Gᵀ) ⊙ (Bᵀ d[c] B)] A`: for each of the
//! 16 positions ξ of the 4×4 transformed tile, one gemm `M[ξ] = U[ξ]·V[ξ]` with
//! `U[ξ] = (G W Gᵀ)[ξ]` (`co × ci`) and `V[ξ] = (Bᵀ d B)[ξ]` (`ci × tiles`). That is 16
//! multiply-adds per 2×2 outputs and input channel against 36 for the direct sum: the
//! products drop by 2.25×, and the transforms are additions (the weights' halves are exact in
//! binary). The sums are regrouped, so results differ from the direct sum by rounding only
//! (the tests bound the difference against float64 loops as tightly as the direct kernels').
//!
//! The input gradient of such a convolution is the same convolution of dy with the kernel
//! rotated by 180° and its channels swapped, so it runs here too; the weight gradient is the
//! adjoint of the three steps ([`conv2d_weight_grad`]), again 16 gemms.
//!
//! Measured on a 2-core Zen 4 VM (`ddpm bench --preset ddpm-cifar10`, 128–256 channels, one
//! binary with `DDPM_WINOGRAD_CONV` switching, three interleaved rounds): training step b8
//! 1802–2008 ms without, 1409–1542 ms with; forward b8 571–601 ms against 431–437 ms. At 64
//! channels (the `mnist` presets, 7×7 to 28×28 maps) it was slower than the direct kernels
//! (`mnist` train b64 961–964 against 902–909 ms), hence [`MIN_CHANNELS`].

use gemm::Parallelism;
use rayon::prelude::*;

use super::buf::SharedMut;
use super::conv::{Add, ConvGeom};
use super::matmul::{View, matmul};

/// Input and output channels from which the Winograd path replaces the others. Below it the
/// transforms' memory traffic (4× the input and the output) outweighs the saved products.
pub(crate) const MIN_CHANNELS: usize = 128;

/// Whether `g` is a 3×3, stride-1, padding-1 convolution with an output the size of its input,
/// at least [`MIN_CHANNELS`] input and output channels and [`MIN_TILES`] output tiles.
pub(crate) fn applies(g: &ConvGeom) -> bool {
    let (th, tw) = tiles(g.h, g.w);
    is_same_3x3(g) && g.ci >= MIN_CHANNELS && g.co >= MIN_CHANNELS && g.n * th * tw >= MIN_TILES
}

/// Fewest 2×2 tiles (over the batch) for which the Winograd path replaces the others: with
/// fewer, its blocks' gemms are a few columns wide and re-pack `U` for little work.
/// `ddpm-cifar10` forward at batch 1 (8×8 and 4×4 maps below it): 111–112 ms with every
/// map on Winograd, 81–82 ms with this threshold (the training step at batch 8 unchanged).
const MIN_TILES: usize = 32;

/// Whether `g` is a 3×3, stride-1, padding-1 convolution with an output the size of its input
/// (any channel counts: what the transforms themselves need).
pub(crate) fn is_same_3x3(g: &ConvGeom) -> bool {
    g.kh == 3
        && g.kw == 3
        && g.sh == 1
        && g.sw == 1
        && g.pt == 1
        && g.pl == 1
        && g.oh == g.h
        && g.ow == g.w
        && g.h > 0
        && g.w > 0
}

/// Positions of the transformed 4×4 tile.
const XI: usize = 16;

/// Tiles per block (about): a block's transformed input `[16][ci][tiles]` and products
/// `[16][co][tiles]` stay in the L2 cache while its 16 gemms run.
const BLOCK_TILES: usize = 64;

/// Fewest blocks a forward or input gradient is split into where it has the tile rows (work
/// for the pools of small machines; small maps at batch 1 have fewer).
const MIN_BLOCKS: usize = 4;

/// Tiles of an `h × w` map: `(⌈h/2⌉, ⌈w/2⌉)`.
fn tiles(h: usize, w: usize) -> (usize, usize) {
    (h.div_ceil(2), w.div_ceil(2))
}

/// Forward: `y = conv(x, W) + bias (+ add)`, `[n, co, h, w]`; `g` must satisfy
/// [`is_same_3x3`].
pub(crate) fn conv2d_forward(
    g: &ConvGeom,
    x: &[f32],
    w: &[f32],
    bias: &[f32],
    add: Add<'_>,
) -> Vec<f32> {
    // U[ξ][o][c] = (G W[o][c] Gᵀ)[ξ]; row o's kernels are W[o][c] = w[(o·ci + c)·9 ..].
    let u = transform_weights(g.co, g.ci, |o, c, t| w[(o * g.ci + c) * 9 + t]);
    let residual = match add {
        Add::Residual(r) => Some(r),
        _ => None,
    };
    convolve(
        g,
        x,
        &u,
        g.ci,
        g.co,
        |img, o| add.offset(bias, g.co, img, o),
        residual,
    )
}

/// Input gradient: `dx[c] = Σ_o dy[o] ⋆ rot180(W[o][c])` (a same convolution of dy with the
/// flipped, transposed kernel), `[n, ci, h, w]`; `g` must satisfy [`is_same_3x3`].
pub(crate) fn conv2d_input_grad(g: &ConvGeom, w: &[f32], dy: &[f32]) -> Vec<f32> {
    // U'[ξ][c][o] = (G rot180(W[o][c]) Gᵀ)[ξ].
    let u = transform_weights(g.ci, g.co, |c, o, t| w[(o * g.ci + c) * 9 + 8 - t]);
    convolve(g, dy, &u, g.co, g.ci, |_, _| 0.0, None)
}

/// `u[ξ][r][s] = (G k Gᵀ)[ξ]` for the 3×3 kernels `k[t] = tap(r, s, t)` (taps row-major),
/// `rows × cols` of them, one row r per task, vectorised along s.
fn transform_weights(
    rows: usize,
    cols: usize,
    tap: impl Fn(usize, usize, usize) -> f32 + Sync,
) -> Vec<f32> {
    let plane = rows * cols;
    let mut u = vec![0f32; XI * plane];
    let up = SharedMut::new(&mut u);
    (0..rows).into_par_iter().for_each_init(
        || vec![0f32; (9 + 12) * cols],
        |buf, r| {
            let (k, gk) = buf.split_at_mut(9 * cols);
            // k[t][s]: the taps of row r's kernels, one plane per tap.
            for (t, kt) in k.chunks_exact_mut(cols).enumerate() {
                for (s, v) in kt.iter_mut().enumerate() {
                    *v = tap(r, s, t);
                }
            }
            // G k: gk[i][j][s] for the 4 rows i of G and the 3 columns j.
            for j in 0..3 {
                let (a, b, c) = (
                    &k[j * cols..][..cols],
                    &k[(3 + j) * cols..][..cols],
                    &k[(6 + j) * cols..][..cols],
                );
                apply_g([a, b, c], four(&mut gk[j * cols..], 3 * cols, cols));
            }
            // (G k) Gᵀ: the same combinations of each row's columns, written to u[ξ][r][·].
            for i in 0..4 {
                let (a, b, c) = (
                    &gk[(3 * i) * cols..][..cols],
                    &gk[(3 * i + 1) * cols..][..cols],
                    &gk[(3 * i + 2) * cols..][..cols],
                );
                // SAFETY: ξ = 4i + j < 16 and r < rows: row r of plane ξ lies inside `u`;
                // only this task writes row r.
                let row = |j: usize| unsafe {
                    std::slice::from_raw_parts_mut(up.at((4 * i + j) * plane + r * cols), cols)
                };
                apply_g([a, b, c], [row(0), row(1), row(2), row(3)]);
            }
        },
    );
    u
}

/// `G·[a, b, c]` element-wise: `out = [a, ½(a + b + c), ½(a − b + c), c]` (the rows of G
/// applied to three vectors of taps).
fn apply_g([a, b, c]: [&[f32]; 3], [g0, g1, g2, g3]: [&mut [f32]; 4]) {
    g0.copy_from_slice(a);
    for (((d, &a), &b), &c) in g1.iter_mut().zip(a).zip(b).zip(c) {
        *d = 0.5 * (a + b + c);
    }
    for (((d, &a), &b), &c) in g2.iter_mut().zip(a).zip(b).zip(c) {
        *d = 0.5 * (a - b + c);
    }
    g3.copy_from_slice(c);
}

/// Per-task scratch of [`convolve`].
struct Scratch {
    /// Transformed input of the block, `[16][c_in][pb]`.
    v: Vec<f32>,
    /// Products of the block, `[16][c_out][pb]`.
    m: Vec<f32>,
    /// Even and odd columns of one zero-padded input row (`2·(tw + 1)`), and the column
    /// transforms of a patch's 4 rows (`16·tw`).
    row: Vec<f32>,
    /// One tile row's transform `[16][tw]`.
    tile: Vec<f32>,
}

/// `y = Aᵀ [U ⊙ (Bᵀ src B)] A` over every tile of `src` (`[n][c_in][h][w]`), plus
/// `offset(img, o)` and `residual`: `[n][c_out][h][w]`. The tiles are processed in blocks of
/// whole tile rows (of one or more images), one block per task: its input transform, its 16
/// gemms `M[ξ] = U[ξ]·V[ξ]` and its output transform run back to back in the task's
/// cache-sized scratch.
fn convolve(
    g: &ConvGeom,
    src: &[f32],
    u: &[f32],
    c_in: usize,
    c_out: usize,
    offset: impl Fn(usize, usize) -> f32 + Sync,
    residual: Option<&[f32]>,
) -> Vec<f32> {
    let (n, h, w) = (g.n, g.h, g.w);
    let (th, tw) = tiles(h, w);
    let tile_rows = n * th;
    // Whole tile rows per block: about BLOCK_TILES tiles, and at least MIN_BLOCKS blocks (a
    // fixed count rather than the pool's size, so the blocking, and with it every rounding,
    // is the same on every machine).
    let per = (BLOCK_TILES / tw)
        .max(1)
        .min(tile_rows.div_ceil(MIN_BLOCKS))
        .max(1);
    let blocks = tile_rows.div_ceil(per);
    let mut y = super::buf::zeroed(n * c_out * h * w);
    let yp = SharedMut::new(&mut y);
    (0..blocks).into_par_iter().for_each_init(
        || Scratch {
            v: vec![0f32; XI * c_in * per * tw],
            m: vec![0f32; XI * c_out * per * tw],
            row: vec![0f32; 2 * (tw + 1) + XI * tw],
            tile: vec![0f32; XI * tw],
        },
        |s, b| {
            let (r0, r1) = (b * per, ((b + 1) * per).min(tile_rows));
            let pb = (r1 - r0) * tw;
            let rows = (r0, r1);
            let scratch = (&mut s.row[..], &mut s.tile[..]);
            transform_rows(src, c_in, g, rows, input_tile_row, scratch, &mut s.v);
            for xi in 0..XI {
                let lhs = View {
                    data: &u[xi * c_out * c_in..][..c_out * c_in],
                    rs: c_in,
                    cs: 1,
                };
                let rhs = View {
                    data: &s.v[xi * c_in * pb..][..c_in * pb],
                    rs: pb,
                    cs: 1,
                };
                let dst = &mut s.m[xi * c_out * pb..][..c_out * pb];
                matmul(c_out, pb, c_in, dst, lhs, rhs, false, Parallelism::None);
            }
            // Output transform into rows 2ty, 2ty + 1 of every output channel.
            for o in 0..c_out {
                for (k, r) in (r0..r1).enumerate() {
                    let (img, ty) = (r / th, r % th);
                    for (xi, t) in s.tile.chunks_exact_mut(tw).enumerate() {
                        t.copy_from_slice(&s.m[(xi * c_out + o) * pb + k * tw..][..tw]);
                    }
                    let at = (img * c_out + o) * h * w;
                    // SAFETY: output rows 2ty, 2ty + 1 (< h) of plane (img, o) lie inside `y`
                    // and belong to tile row r, which only this block holds.
                    let out = unsafe {
                        let rows = (h - 2 * ty).min(2);
                        std::slice::from_raw_parts_mut(yp.at(at + 2 * ty * w), rows * w)
                    };
                    let res = residual.map(|res| &res[at + 2 * ty * w..][..out.len()]);
                    output_tile_row(&s.tile, tw, w, offset(img, o), res, out, &mut s.row);
                }
            }
        },
    );
    y
}

/// The transform `f` (one of [`input_tile_row`], [`grad_tile_row`]) of tile rows `r0..r1`
/// (over the batch: row r is tile row `r mod th` of image `r / th`) of every channel of `src`
/// (`[n][channels][h][w]`), as `out[ξ][c][k·tw + tx]` for the block's k-th tile row;
/// `scratch` is `f`'s row scratch and a `[16][tw]` tile row.
fn transform_rows(
    src: &[f32],
    channels: usize,
    g: &ConvGeom,
    (r0, r1): (usize, usize),
    f: TileRowTransform,
    (row, tile): (&mut [f32], &mut [f32]),
    out: &mut [f32],
) {
    let (h, w) = (g.h, g.w);
    let (th, tw) = tiles(h, w);
    let pb = (r1 - r0) * tw;
    for c in 0..channels {
        for (k, r) in (r0..r1).enumerate() {
            let (img, ty) = (r / th, r % th);
            let plane = &src[(img * channels + c) * h * w..][..h * w];
            f(plane, h, w, ty, tw, row, tile);
            for (xi, t) in tile.chunks_exact(tw).enumerate() {
                out[(xi * channels + c) * pb + k * tw..][..tw].copy_from_slice(t);
            }
        }
    }
}

/// A transform of one tile row of a plane: `(plane, h, w, ty, tw, scratch, tile)`.
type TileRowTransform = fn(&[f32], usize, usize, usize, usize, &mut [f32], &mut [f32]);

/// Weight gradient: `dW[o][c] = Gᵀ (Σ_p dM[o][p] ⊙ V[c][p]) G`, `[co, ci, 3, 3]`, where
/// `V[c][p] = Bᵀ d B` is tile p's transformed input (as in the forward) and
/// `dM[o][p] = A dY A ᵀ` its transformed output gradient (the adjoints of `Y = Aᵀ M A`,
/// `M[ξ] = U[ξ]·V[ξ]` and `U = G W Gᵀ`). For each ξ that is one gemm
/// `dU[ξ] = dM[ξ]·V[ξ]ᵀ` (`co × tiles × ci`): 16 products per tile against the direct sum's
/// 36. The tiles are taken in blocks along that sum, in [`DW_PARTS`] runs summed in
/// parallel, each into its own `dU`; the runs' sums are added in order at the end. `g` must satisfy
/// [`is_same_3x3`].
pub(crate) fn conv2d_weight_grad(g: &ConvGeom, x: &[f32], dy: &[f32]) -> Vec<f32> {
    let (n, h, w, ci, co) = (g.n, g.h, g.w, g.ci, g.co);
    let (th, tw) = tiles(h, w);
    let tile_rows = n * th;
    // Blocks along the sum, in DW_PARTS contiguous runs (fixed, not the thread count: every
    // run sums its blocks in order into its own dU, and the runs are added in order, so the
    // result does not depend on the pool's size or scheduling).
    let per = (BLOCK_TILES_DW / tw)
        .max(1)
        .min(tile_rows.div_ceil(DW_PARTS))
        .max(1);
    let blocks = tile_rows.div_ceil(per);
    let parts = blocks.min(DW_PARTS);
    let plane = co * ci;
    let partials: Vec<Vec<f32>> = (0..parts)
        .into_par_iter()
        .map(|part| {
            let mut du = vec![0f32; XI * plane];
            let mut v = vec![0f32; XI * ci * per * tw];
            let mut dm = vec![0f32; XI * co * per * tw];
            let mut row = vec![0f32; 2 * (tw + 1) + XI * tw];
            let mut tile = vec![0f32; XI * tw];
            for b in (part * blocks / parts)..((part + 1) * blocks / parts) {
                let (r0, r1) = (b * per, ((b + 1) * per).min(tile_rows));
                let pb = (r1 - r0) * tw;
                let rows = (r0, r1);
                transform_rows(
                    x,
                    ci,
                    g,
                    rows,
                    input_tile_row,
                    (&mut row, &mut tile),
                    &mut v,
                );
                transform_rows(
                    dy,
                    co,
                    g,
                    rows,
                    grad_tile_row,
                    (&mut row, &mut tile),
                    &mut dm,
                );
                // The 16 gemms in parallel (each ξ's sum still runs over the blocks in order).
                du.par_chunks_mut(plane).enumerate().for_each(|(xi, dst)| {
                    let lhs = View {
                        data: &dm[xi * co * pb..][..co * pb],
                        rs: pb,
                        cs: 1,
                    };
                    let rhs = View {
                        data: &v[xi * ci * pb..][..ci * pb],
                        rs: 1,
                        cs: pb,
                    };
                    matmul(co, ci, pb, dst, lhs, rhs, true, Parallelism::None);
                });
            }
            du
        })
        .collect();
    let mut partials = partials.into_iter();
    let mut du = partials.next().unwrap_or_else(|| vec![0f32; XI * plane]);
    for p in partials {
        du.par_chunks_mut(1 << 14)
            .zip(p.par_chunks(1 << 14))
            .for_each(|(a, b)| a.iter_mut().zip(b).for_each(|(a, &b)| *a += b));
    }
    // dW[o][c] = Gᵀ dU[o][c] G, one output channel per task, vectorised along c.
    let mut dw = vec![0f32; co * ci * 9];
    dw.par_chunks_mut(ci * 9).enumerate().for_each_init(
        || vec![0f32; 12 * ci],
        |gd, (o, out)| {
            let d = |xi: usize| &du[xi * plane + o * ci..][..ci];
            // Gᵀ D: rows D0 + ½(D1 + D2), ½(D1 − D2), ½(D1 + D2) + D3, for each column j.
            for j in 0..4 {
                let (d0, d1, d2, d3) = (d(j), d(4 + j), d(8 + j), d(12 + j));
                let (g0, rest) = gd[j * ci..].split_at_mut(4 * ci);
                let (g1, g2) = rest.split_at_mut(4 * ci);
                for c in 0..ci {
                    let (p, m) = (0.5 * (d1[c] + d2[c]), 0.5 * (d1[c] - d2[c]));
                    g0[c] = d0[c] + p;
                    g1[c] = m;
                    g2[c] = p + d3[c];
                }
            }
            // (Gᵀ D) G: the same combinations of each row's columns, taps (i, j).
            for i in 0..3 {
                let e = |j: usize| &gd[(i * 4 + j) * ci..][..ci];
                let (e0, e1, e2, e3) = (e(0), e(1), e(2), e(3));
                for c in 0..ci {
                    let (p, m) = (0.5 * (e1[c] + e2[c]), 0.5 * (e1[c] - e2[c]));
                    let taps = &mut out[c * 9 + i * 3..][..3];
                    taps[0] = e0[c] + p;
                    taps[1] = m;
                    taps[2] = p + e3[c];
                }
            }
        },
    );
    dw
}

/// Tiles per block along the weight gradient's sum (its gemms' inner dimension).
const BLOCK_TILES_DW: usize = 128;

/// Runs of blocks the weight gradient's sum is split into (each with its own `16·co·ci`
/// partial sums), fixed so that the result does not depend on the thread count; within a run
/// the 16 gemms of a block run in parallel, so larger pools still have work.
const DW_PARTS: usize = 2;

/// `A dY Aᵀ` of the `tw` tiles of tile row `ty` of one `h × w` output-gradient plane,
/// `tile[ξ·tw + tx]` (tile `(ty, tx)` covers rows `2ty, 2ty + 1` and columns
/// `2tx, 2tx + 1`; zero past the edge).
fn grad_tile_row(
    plane: &[f32],
    h: usize,
    w: usize,
    ty: usize,
    tw: usize,
    scratch: &mut [f32],
    tile: &mut [f32],
) {
    let (eo, cols) = scratch.split_at_mut(2 * (tw + 1));
    // cols[(a·4 + j)·tw + tx]: (dY Aᵀ)[a][j] = e, e + o, e − o, −o of output row 2ty + a.
    for a in 0..2 {
        let c = &mut cols[a * 4 * tw..][..4 * tw];
        let Some(row) = Some(2 * ty + a)
            .filter(|&oy| oy < h)
            .map(|oy| &plane[oy * w..][..w])
        else {
            c.fill(0.0);
            continue;
        };
        let (e, o) = eo.split_at_mut(tw + 1);
        for k in 0..tw {
            e[k] = row[2 * k];
            o[k] = row.get(2 * k + 1).copied().unwrap_or(0.0);
        }
        let [c0, c1, c2, c3] = four(c, tw, tw);
        for tx in 0..tw {
            c0[tx] = e[tx];
            c1[tx] = e[tx] + o[tx];
            c2[tx] = e[tx] - o[tx];
            c3[tx] = -o[tx];
        }
    }
    // A (dY Aᵀ): rows y0, y0 + y1, y0 − y1, −y1, for each column j.
    for j in 0..4 {
        let (y0, y1) = (&cols[j * tw..][..tw], &cols[(4 + j) * tw..][..tw]);
        let [t0, t1, t2, t3] = four(&mut tile[j * tw..], 4 * tw, tw);
        for tx in 0..tw {
            t0[tx] = y0[tx];
            t1[tx] = y0[tx] + y1[tx];
            t2[tx] = y0[tx] - y1[tx];
            t3[tx] = -y1[tx];
        }
    }
}

/// `Bᵀ d B` of the `tw` tiles of tile row `ty` of one `h × w` plane, `tile[ξ·tw + tx]`
/// (zero padding: patch row i is input row `2ty − 1 + i`, column j input column
/// `2tx − 1 + j`). Vectorised along the tile row: the even and odd columns of the padded
/// row are split apart, so every combination is of contiguous slices.
fn input_tile_row(
    plane: &[f32],
    h: usize,
    w: usize,
    ty: usize,
    tw: usize,
    scratch: &mut [f32],
    tile: &mut [f32],
) {
    let (eo, cols) = scratch.split_at_mut(2 * (tw + 1));
    // cols[(i·4 + j)·tw + tx]: (d B)[i][j] of each tile, for the patch's rows i.
    for i in 0..4 {
        let c = &mut cols[i * 4 * tw..][..4 * tw];
        let Some(row) = (2 * ty + i)
            .checked_sub(1)
            .filter(|&iy| iy < h)
            .map(|iy| &plane[iy * w..][..w])
        else {
            c.fill(0.0);
            continue;
        };
        // Padded row pr[m] = row[m − 1] (0 ≤ m < 2tw + 2): e[k] = pr[2k], o[k] = pr[2k + 1].
        let (e, o) = eo.split_at_mut(tw + 1);
        e[0] = 0.0;
        for k in 0..=tw {
            if k > 0 {
                e[k] = row.get(2 * k - 1).copied().unwrap_or(0.0);
            }
            o[k] = row.get(2 * k).copied().unwrap_or(0.0);
        }
        // Patch columns of tile tx: e[tx], o[tx], e[tx + 1], o[tx + 1].
        let (e0, e1, o0, o1) = (&e[..tw], &e[1..], &o[..tw], &o[1..]);
        let [c0, c1, c2, c3] = four(c, tw, tw);
        for (d, (&a, &b)) in c0.iter_mut().zip(e0.iter().zip(e1)) {
            *d = a - b;
        }
        for (d, (&a, &b)) in c1.iter_mut().zip(o0.iter().zip(e1)) {
            *d = a + b;
        }
        for (d, (&a, &b)) in c2.iter_mut().zip(e1.iter().zip(o0)) {
            *d = a - b;
        }
        for (d, (&a, &b)) in c3.iter_mut().zip(o0.iter().zip(o1)) {
            *d = a - b;
        }
    }
    // Bᵀ (d B): rows 0 − 2, 1 + 2, 2 − 1, 1 − 3, for each column j.
    for j in 0..4 {
        let r = |i: usize| &cols[(i * 4 + j) * tw..][..tw];
        let (r0, r1, r2, r3) = (r(0), r(1), r(2), r(3));
        let [t0, t1, t2, t3] = four(&mut tile[j * tw..], 4 * tw, tw);
        for tx in 0..tw {
            t0[tx] = r0[tx] - r2[tx];
            t1[tx] = r1[tx] + r2[tx];
            t2[tx] = r2[tx] - r1[tx];
            t3[tx] = r1[tx] - r3[tx];
        }
    }
}

/// `Aᵀ m A` of the `tw` tiles of one tile row (`m[ξ·tw + tx]`), plus `offset` and the
/// residual, into the tile row's output rows `out` (`1` or `2` rows of `w`).
fn output_tile_row(
    m: &[f32],
    tw: usize,
    w: usize,
    offset: f32,
    res: Option<&[f32]>,
    out: &mut [f32],
    scratch: &mut [f32],
) {
    let (am, pair) = scratch.split_at_mut(8 * tw);
    let mv = |xi: usize| &m[xi * tw..][..tw];
    // Aᵀ m: am[a][j] = m0j + m1j + m2j (a = 0), m1j − m2j − m3j (a = 1).
    for j in 0..4 {
        let (m0, m1, m2, m3) = (mv(j), mv(4 + j), mv(8 + j), mv(12 + j));
        let (a0, a1) = am[j * tw..].split_at_mut(4 * tw);
        for (tx, d) in a0[..tw].iter_mut().enumerate() {
            *d = m0[tx] + m1[tx] + m2[tx];
        }
        for (tx, d) in a1[..tw].iter_mut().enumerate() {
            *d = m1[tx] - m2[tx] - m3[tx];
        }
    }
    for (a, row) in out.chunks_exact_mut(w).enumerate() {
        let r = |j: usize| &am[(a * 4 + j) * tw..][..tw];
        let (q0, q1, q2, q3) = (r(0), r(1), r(2), r(3));
        // (Aᵀ m) A: columns 0 + 1 + 2 (even output columns) and 1 − 2 − 3 (odd).
        let (even, odd) = pair[..2 * tw].split_at_mut(tw);
        for (tx, d) in even.iter_mut().enumerate() {
            *d = q0[tx] + q1[tx] + q2[tx] + offset;
        }
        for (tx, d) in odd.iter_mut().enumerate() {
            *d = q1[tx] - q2[tx] - q3[tx] + offset;
        }
        for (ox, d) in row.iter_mut().enumerate() {
            *d = if ox % 2 == 0 {
                even[ox / 2]
            } else {
                odd[ox / 2]
            };
        }
        if let Some(res) = res {
            for (d, &v) in row.iter_mut().zip(&res[a * w..][..w]) {
                *d += v;
            }
        }
    }
}

/// The four slices of `len` floats at `0, stride, 2·stride, 3·stride` of `s` (`len ≤ stride`):
/// the rows of one column of a transformed tile row, or the four vectors of one input row.
fn four(s: &mut [f32], stride: usize, len: usize) -> [&mut [f32]; 4] {
    let (a, rest) = s.split_at_mut(stride);
    let (b, rest) = rest.split_at_mut(stride);
    let (c, d) = rest.split_at_mut(stride);
    [&mut a[..len], &mut b[..len], &mut c[..len], &mut d[..len]]
}
