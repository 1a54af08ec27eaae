//! Growing one regression tree on residuals from binned data, best leaf first.
//!
//! Squared error with unit weights makes every hessian 1, so a histogram bin only needs
//! the residual sum and the row count; a leaf's value is `Σr / (n + λ)` and a split's gain
//! is `G_L²/(n_L+λ) + G_R²/(n_R+λ) − G²/(n+λ)`.

use super::bins::BinnedData;
use crate::tree::{LEAF, Tree};

#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Bin {
    sum: f64,
    count: f64,
}

/// What one tree is allowed to do (the checked parameters, unpacked).
#[derive(Debug, Clone, Copy)]
pub(crate) struct GrowLimits {
    pub(crate) max_depth: usize,
    pub(crate) max_leaves: usize,
    pub(crate) min_samples_leaf: usize,
    pub(crate) lambda: f64,
    pub(crate) learning_rate: f64,
}

#[derive(Debug, Clone, Copy)]
struct Split {
    gain: f64,
    feature: usize,
    bin: u8,
    default_left: bool,
}

#[derive(Debug)]
struct Open {
    node: usize,
    start: usize,
    end: usize,
    depth: usize,
    sum: f64,
    hist: Option<usize>,
    split: Option<Split>,
}

/// How a grown tree routes binned rows: per node, the split bin and default side.
#[derive(Debug, Default)]
pub(crate) struct BinRule {
    pub(crate) feature: Vec<usize>,
    pub(crate) bin: Vec<u8>,
    pub(crate) default_left: Vec<bool>,
}

/// Reusable buffers, so that growing a hundred trees allocates once.
#[derive(Debug, Default)]
pub(crate) struct Grower {
    hists: Vec<Vec<Bin>>,
    free: Vec<usize>,
    scratch: Vec<u32>,
}

impl Grower {
    fn take_hist(&mut self, total_bins: usize) -> usize {
        if let Some(i) = self.free.pop() {
            self.hists[i].iter_mut().for_each(|b| *b = Bin::default());
            i
        } else {
            self.hists.push(vec![Bin::default(); total_bins]);
            self.hists.len() - 1
        }
    }

    fn build_hist(&mut self, data: &BinnedData, residual: &[f64], rows: &[u32], h: usize) {
        let hist = &mut self.hists[h];
        let nf = data.n_features;
        let offsets = &data.offsets[..nf];
        for &r in rows {
            let r = r as usize;
            let g = residual[r];
            let bins = data.row(r);
            for (&off, &b) in offsets.iter().zip(bins) {
                let slot = &mut hist[off + b as usize];
                slot.sum += g;
                slot.count += 1.0;
            }
        }
    }

    fn best_split(
        &self,
        data: &BinnedData,
        h: usize,
        sum: f64,
        count: f64,
        limits: &GrowLimits,
    ) -> Option<Split> {
        let hist = &self.hists[h];
        let lambda = limits.lambda;
        let min_leaf = limits.min_samples_leaf as f64;
        let parent = sum * sum / (count + lambda);
        let mut best: Option<Split> = None;
        for (f, fb) in data.features.iter().enumerate() {
            let nb = fb.n_value_bins();
            let block = &hist[data.offsets[f]..data.offsets[f] + nb + 1];
            let missing = block[nb];
            let (mut ls, mut lc) = (0.0, 0.0);
            for (b, bin) in block[..nb - 1].iter().enumerate() {
                ls += bin.sum;
                lc += bin.count;
                if bin.count == 0.0 {
                    continue;
                }
                // Missing values are tried on both sides; with none in this node, the
                // default goes to the larger child, the likelier home of an unseen row.
                let sides: &[bool] = if missing.count > 0.0 {
                    &[true, false]
                } else {
                    &[false]
                };
                for &default_left in sides {
                    let (l_sum, l_cnt) = if default_left {
                        (ls + missing.sum, lc + missing.count)
                    } else {
                        (ls, lc)
                    };
                    let (r_sum, r_cnt) = (sum - l_sum, count - l_cnt);
                    if l_cnt < min_leaf || r_cnt < min_leaf {
                        continue;
                    }
                    let gain = l_sum * l_sum / (l_cnt + lambda) + r_sum * r_sum / (r_cnt + lambda)
                        - parent;
                    if gain > best.map_or(1e-12 * parent.abs().max(1e-300), |s| s.gain) {
                        let default_left = if missing.count > 0.0 {
                            default_left
                        } else {
                            l_cnt >= r_cnt
                        };
                        best = Some(Split {
                            gain,
                            feature: f,
                            bin: b as u8,
                            default_left,
                        });
                    }
                }
            }
        }
        best
    }

    /// Grows one tree on `rows` (which it reorders) against `residual`; returns the tree
    /// (leaf values already scaled by the learning rate; covers count `rows`), the bin
    /// rule, and for each leaf the range of `rows` that reached it.
    pub(crate) fn grow(
        &mut self,
        data: &BinnedData,
        residual: &[f64],
        rows: &mut [u32],
        limits: &GrowLimits,
    ) -> (Tree, BinRule, Vec<(usize, usize, usize)>) {
        let mut tree = Tree::default();
        let mut rule = BinRule::default();
        let push_node = |tree: &mut Tree, rule: &mut BinRule, cover: f64| {
            tree.children_left.push(LEAF);
            tree.children_right.push(LEAF);
            tree.children_default.push(LEAF);
            tree.feature.push(LEAF);
            tree.threshold.push(0.0);
            tree.value.push(0.0);
            tree.cover.push(cover);
            rule.feature.push(0);
            rule.bin.push(0);
            rule.default_left.push(false);
            tree.value.len() - 1
        };
        self.free = (0..self.hists.len()).collect();
        let n = rows.len();
        let root_sum: f64 = rows.iter().map(|&r| residual[r as usize]).sum();
        let root = push_node(&mut tree, &mut rule, n as f64);
        let mut open = vec![Open {
            node: root,
            start: 0,
            end: n,
            depth: 0,
            sum: root_sum,
            hist: None,
            split: None,
        }];
        if self.splittable(&open[0], limits) {
            let h = self.take_hist(data.total_bins);
            self.build_hist(data, residual, rows, h);
            open[0].split = self.best_split(data, h, root_sum, n as f64, limits);
            open[0].hist = Some(h);
        }
        let mut leaves = 1;
        while leaves < limits.max_leaves.max(1) {
            let Some(pick) = open
                .iter()
                .enumerate()
                .filter_map(|(i, o)| o.split.map(|s| (i, s.gain)))
                .max_by(|a, b| a.1.total_cmp(&b.1).then(b.0.cmp(&a.0)))
                .map(|(i, _)| i)
            else {
                break;
            };
            let parent = open.swap_remove(pick);
            let Some(split) = parent.split else { break };
            let fb = &data.features[split.feature];
            let missing = fb.missing_bin();
            // Stable partition: left rows stay in place, right rows go through scratch, so
            // each range stays in ascending row order for cache-friendly histogram passes.
            self.scratch.clear();
            let mut l = parent.start;
            let (mut l_sum, mut r_sum) = (0.0, 0.0);
            for i in parent.start..parent.end {
                let r = rows[i];
                let b = data.bins[r as usize * data.n_features + split.feature];
                let left = if b == missing {
                    split.default_left
                } else {
                    b <= split.bin
                };
                if left {
                    rows[l] = r;
                    l += 1;
                    l_sum += residual[r as usize];
                } else {
                    self.scratch.push(r);
                    r_sum += residual[r as usize];
                }
            }
            rows[l..parent.end].copy_from_slice(&self.scratch);

            let left_node = push_node(&mut tree, &mut rule, (l - parent.start) as f64);
            let right_node = push_node(&mut tree, &mut rule, (parent.end - l) as f64);
            let p = parent.node;
            tree.children_left[p] = left_node as i32;
            tree.children_right[p] = right_node as i32;
            tree.children_default[p] = if split.default_left {
                left_node
            } else {
                right_node
            } as i32;
            tree.feature[p] = split.feature as i32;
            tree.threshold[p] = fb.cuts[split.bin as usize];
            rule.feature[p] = split.feature;
            rule.bin[p] = split.bin;
            rule.default_left[p] = split.default_left;
            leaves += 1;

            let mut left = Open {
                node: left_node,
                start: parent.start,
                end: l,
                depth: parent.depth + 1,
                sum: l_sum,
                hist: None,
                split: None,
            };
            let mut right = Open {
                node: right_node,
                start: l,
                end: parent.end,
                depth: parent.depth + 1,
                sum: r_sum,
                hist: None,
                split: None,
            };
            let (ls, rs) = (
                self.splittable(&left, limits),
                self.splittable(&right, limits),
            );
            if let Some(ph) = parent.hist {
                if ls || rs {
                    // Histogram subtraction: build the smaller child, the sibling is the
                    // parent minus it, reusing the parent's buffer.
                    let left_smaller = left.end - left.start <= right.end - right.start;
                    let (small, large) = if left_smaller {
                        (&mut left, &mut right)
                    } else {
                        (&mut right, &mut left)
                    };
                    let sh = self.take_hist(data.total_bins);
                    self.build_hist(data, residual, &rows[small.start..small.end], sh);
                    {
                        let (a, b) = two_mut(&mut self.hists, ph, sh);
                        for (p, s) in a.iter_mut().zip(b.iter()) {
                            p.sum -= s.sum;
                            p.count -= s.count;
                        }
                    }
                    small.hist = Some(sh);
                    large.hist = Some(ph);
                } else {
                    self.free.push(ph);
                }
            }
            for (child, ok) in [(&mut left, ls), (&mut right, rs)] {
                if let Some(h) = child.hist {
                    if ok {
                        let cnt = (child.end - child.start) as f64;
                        child.split = self.best_split(data, h, child.sum, cnt, limits);
                    }
                    if child.split.is_none() {
                        self.free.push(h);
                        child.hist = None;
                    }
                }
            }
            open.push(left);
            open.push(right);
        }
        let mut leaf_ranges = Vec::with_capacity(open.len());
        for o in open {
            let cnt = (o.end - o.start) as f64;
            tree.value[o.node] = limits.learning_rate * o.sum / (cnt + limits.lambda);
            leaf_ranges.push((o.node, o.start, o.end));
        }
        (tree, rule, leaf_ranges)
    }

    fn splittable(&self, o: &Open, limits: &GrowLimits) -> bool {
        o.depth < limits.max_depth && o.end - o.start >= 2 * limits.min_samples_leaf.max(1)
    }
}

fn two_mut<T>(v: &mut [T], a: usize, b: usize) -> (&mut T, &mut T) {
    if a < b {
        let (x, y) = v.split_at_mut(b);
        (&mut x[a], &mut y[0])
    } else {
        let (x, y) = v.split_at_mut(a);
        (&mut y[0], &mut x[b])
    }
}

/// Sets each internal node's value to the cover-weighted mean of its children, which is
/// the cover-weighted mean of the leaves below. Children always come after their parent.
pub(crate) fn fill_internal_values(tree: &mut Tree) {
    for node in (0..tree.len()).rev() {
        let (l, r) = (tree.children_left[node], tree.children_right[node]);
        if l == LEAF {
            continue;
        }
        let (l, r) = (l as usize, r as usize);
        let c = tree.cover[l] + tree.cover[r];
        tree.cover[node] = c;
        tree.value[node] = if c > 0.0 {
            (tree.value[l] * tree.cover[l] + tree.value[r] * tree.cover[r]) / c
        } else {
            0.5 * (tree.value[l] + tree.value[r])
        };
    }
}

/// The leaf a binned row reaches.
#[inline]
pub(crate) fn leaf_of_binned(tree: &Tree, rule: &BinRule, data: &BinnedData, row: &[u8]) -> usize {
    let mut node = 0usize;
    while tree.children_left[node] != LEAF {
        let f = rule.feature[node];
        let b = row[f];
        let left = if b == data.features[f].missing_bin() {
            rule.default_left[node]
        } else {
            b <= rule.bin[node]
        };
        node = if left {
            tree.children_left[node]
        } else {
            tree.children_right[node]
        } as usize;
    }
    node
}
