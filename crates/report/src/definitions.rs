//! What each figure of a report means, written into the report itself (HTML and
//! Markdown list them, JSON carries them), so that an auditor reading it alone need not
//! look the formulas up. The book's chapter on reports (docs/src/reports.md,
//! "Definitions") says the same in more words.

use serde::Serialize;

/// One figure and how it is computed.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Definition {
    /// The figure, as the report names it.
    pub figure: &'static str,
    /// Its formula and interval, in words a reader can check.
    pub definition: &'static str,
}

/// Where the definitions are explained at length.
pub const DEFINITIONS_LINK: &str = "docs/src/reports.md#definitions";

/// Which rows a reported outcome applies to.
pub const OUTCOME_ROWS: &str = "An outcome applies to the rows of its record as it was \
    reported: one value to every row, an array to the rows in order (null: unknown for \
    that row), an outcome reported with `row: k` to row k alone; the latest reported \
    outcome of a record counts.";

/// Every figure of the fairness, drift and importance sections. `u` is an unprivileged
/// group, `p` the privileged one; intervals are at the route's `confidence` (default
/// 0.95).
pub const DEFINITIONS: &[Definition] = &[
    Definition {
        figure: "selection rate (SR)",
        definition: "favourable decisions / explained predictions of the group; Wilson score \
            interval",
    },
    Definition {
        figure: "true positive rate (TPR)",
        definition: "favourable decisions among the group's rows whose reported outcome was \
            favourable; Wilson score interval",
    },
    Definition {
        figure: "false positive rate (FPR)",
        definition: "favourable decisions among the group's rows whose reported outcome was \
            unfavourable; Wilson score interval",
    },
    Definition {
        figure: "statistical parity difference (SPD)",
        definition: "SR_u − SR_p, signed: negative when the unprivileged group is selected \
            less; Newcombe hybrid score interval; fail when the whole interval is beyond \
            ±max_difference (0.1)",
    },
    Definition {
        figure: "disparate impact (DI)",
        definition: "SR_u / SR_p, from 0 with no upper bound (above 1 when the unprivileged \
            group is selected more); interval [L_u / U_p, U_u / L_p] from the two Wilson \
            intervals; fail when its upper end U_u / L_p is below 0.8 (four-fifths rule)",
    },
    Definition {
        figure: "equal opportunity difference (EOD)",
        definition: "TPR_u − TPR_p, signed; Newcombe hybrid score interval; fail when the \
            whole interval is beyond ±max_difference (0.1)",
    },
    Definition {
        figure: "average odds difference (AOD)",
        definition: "((FPR_u − FPR_p) + (TPR_u − TPR_p)) / 2, signed; no verdict",
    },
    Definition {
        figure: "verdict",
        definition: "insufficient_data below min_group_size rows in a group (positives, for \
            EOD); fail only when the whole interval breaks the rule; inconclusive when the \
            point estimate breaks it but the interval does not; else pass",
    },
    Definition {
        figure: "PSI",
        definition: "Σ (C − R) ln(C / R) over bins, C and R the current and reference shares \
            (raised to at least 1e-4); numbers: 10 bins cut at the reference's quantiles; \
            categories: the levels of both periods",
    },
    Definition {
        figure: "KS",
        definition: "two-sample Kolmogorov–Smirnov D = max |F_current − F_reference| with its \
            asymptotic p-value (numbers)",
    },
    Definition {
        figure: "χ²",
        definition: "chi-square test of homogeneity of the 2 × k table of level counts, k − 1 \
            degrees of freedom (categories)",
    },
    Definition {
        figure: "mean |attribution|",
        definition: "mean over explained rows of the absolute SHAP value of a feature; the \
            protected share is the protected features' sum over all features' sum",
    },
];
