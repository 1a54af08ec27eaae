//! The report as Markdown: the same sections and figures as the HTML, in tables, for
//! reading in a terminal or pasting into a ticket.

use std::fmt::Write;

use super::{Report, SECTIONS, num, percent, verdict};

/// Text from the config or the store, made safe inside a table cell.
fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

fn note(out: &mut String, text: Option<&String>) {
    if let Some(t) = text {
        let _ = writeln!(out, "_{}_\n", cell(t));
    }
}

/// The report as a Markdown document.
pub fn render(r: &Report) -> String {
    let mut out = String::new();
    // Writing to a String cannot fail; the results are ignored for that reason.
    let o = &mut out;
    let _ = writeln!(
        o,
        "# Audit report\n\nPeriod **{}** to **{}** (end excluded). Generated {} by Sidelight {}, from {}.\n",
        r.period.from,
        r.period.to,
        r.generated_at,
        r.sidelight_version,
        if r.built_by == "proxy" {
            "a running proxy"
        } else {
            "the audit log"
        }
    );

    let s = &r.system;
    let _ = writeln!(
        o,
        "## {}\n\n{} prediction(s) recorded in the period, and {} other audit event(s).\n",
        SECTIONS[0], s.records, s.events
    );
    note(o, s.note.as_ref());
    if !s.routes.is_empty() {
        let _ = writeln!(
            o,
            "| Route | Path prefix | Model | Records | Surrogate versions seen | In service (held-out R²) |\n|---|---|---|---:|---|---|"
        );
        for route in &s.routes {
            let versions: Vec<String> = route
                .surrogate_versions
                .iter()
                .map(|v| format!("v{v}"))
                .collect();
            let service = match &route.in_service {
                Some(i) => match i.version {
                    Some(v) => format!("v{v} ({})", num(i.r2)),
                    None => "warming up".to_owned(),
                },
                None => "—".to_owned(),
            };
            let _ = writeln!(
                o,
                "| {}{} | {} | {} | {} | {} | {} |",
                cell(&route.route),
                if route.configured {
                    ""
                } else {
                    " (not in the config)"
                },
                cell(route.path_prefix.as_deref().unwrap_or("—")),
                cell(&route.models.join(", ")),
                route.records,
                if versions.is_empty() {
                    "none".to_owned()
                } else {
                    versions.join(", ")
                },
                service
            );
        }
        o.push('\n');
    }

    let _ = writeln!(
        o,
        "## {}\n\nMean |SHAP| per feature over the period's explained predictions.\n",
        SECTIONS[1]
    );
    note(o, r.importance.note.as_ref());
    for route in &r.importance.routes {
        let _ = writeln!(
            o,
            "### Route {}\n\n{} explained row(s); protected features' share: {}.\n\n| Feature | Mean \\|SHAP\\| | Share | Protected |\n|---|---:|---:|---|",
            cell(&route.route),
            route.summary.rows,
            percent(route.summary.protected_share)
        );
        for f in &route.summary.features {
            let _ = writeln!(
                o,
                "| {} | {} | {} | {} |",
                cell(&f.feature),
                num(Some(f.mean_abs_contribution)),
                percent(f.share),
                if f.protected { "yes" } else { "" }
            );
        }
        o.push('\n');
    }

    let f = &r.fairness;
    let _ = writeln!(o, "## {}\n", SECTIONS[2]);
    note(o, f.note.as_ref());
    for route in &f.routes {
        let _ = writeln!(
            o,
            "### Route {}\n\n{} explained row(s), {} with a reported outcome, from {} outcome(s) \
             received, of which {} not usable (a value that is neither favourable nor \
             unfavourable). {}\n",
            cell(&route.route),
            route.rows,
            route.rows_with_outcome,
            route.outcomes_received,
            route.unusable_outcomes,
            crate::OUTCOME_ROWS
        );
        note(o, route.note.as_ref());
        for a in &route.attributes {
            let _ = writeln!(
                o,
                "#### {}: {}\n\n| Group | Rows | Selection rate | Interval | With outcome | TPR |\n|---|---:|---:|---|---:|---:|",
                cell(&a.attribute),
                verdict(a.verdict)
            );
            for g in &a.groups {
                let interval = g.selection.interval.map_or_else(
                    || "—".to_owned(),
                    |i| format!("{} – {}", percent(Some(i.lower)), percent(Some(i.upper))),
                );
                let _ = writeln!(
                    o,
                    "| {}{} | {} | {} | {} | {} | {} |",
                    cell(&g.group),
                    if g.privileged { " (privileged)" } else { "" },
                    g.count,
                    percent(g.selection.rate),
                    interval,
                    g.with_outcome,
                    percent(g.true_positive_rate.rate)
                );
            }
            let _ = writeln!(
                o,
                "\n| Group vs privileged | Disparate impact | Verdict | Parity difference | Verdict | Equal opportunity diff. | Verdict | Average odds diff. |\n|---|---:|---|---:|---|---:|---|---:|"
            );
            for c in &a.comparisons {
                let _ = writeln!(
                    o,
                    "| {} vs {} | {} | {} | {} | {} | {} | {} | {} |",
                    cell(&c.unprivileged),
                    cell(&c.privileged),
                    num(c.disparate_impact.map(|e| e.value)),
                    verdict(c.disparate_impact_verdict),
                    num(c.statistical_parity_difference.map(|e| e.value)),
                    verdict(c.statistical_parity_verdict),
                    num(c.equal_opportunity_difference.map(|e| e.value)),
                    verdict(c.equal_opportunity_verdict),
                    num(c.average_odds_difference)
                );
            }
            o.push('\n');
        }
    }
    for route in &f.routes {
        for x in &route.exposure {
            let _ = writeln!(
                o,
                "### Route {}, exposure by {}: {}\n\nShare of the shown slots per group of items (by {}) and customers, from {} ranking(s).\n\n| Customers | Rankings | Slots | Items | Share | Interval |\n|---|---:|---:|---|---:|---|",
                cell(&route.route),
                cell(&x.attribute),
                verdict(x.check.verdict),
                cell(&x.item_feature),
                x.rankings
            );
            for g in &x.check.groups {
                for share in &g.shares {
                    let interval = share.interval.map_or_else(
                        || "—".to_owned(),
                        |i| format!("{} – {}", percent(Some(i.lower)), percent(Some(i.upper))),
                    );
                    let _ = writeln!(
                        o,
                        "| {} | {} | {} | {} | {} | {} |",
                        cell(&g.customer_group),
                        g.rankings,
                        g.slots,
                        cell(&share.item_group),
                        percent(Some(share.share)),
                        interval
                    );
                }
            }
            let _ = writeln!(
                o,
                "\n| Customers vs privileged | Items | Share difference | Interval | Verdict |\n|---|---|---:|---|---|"
            );
            for c in &x.check.comparisons {
                let interval = c.difference.map_or_else(
                    || "—".to_owned(),
                    |e| format!("{} – {}", num(Some(e.lower)), num(Some(e.upper))),
                );
                let _ = writeln!(
                    o,
                    "| {} vs {} | {} | {} | {} | {} |",
                    cell(&c.unprivileged),
                    cell(&c.privileged),
                    cell(&c.item_group),
                    num(c.difference.map(|e| e.value)),
                    interval,
                    verdict(c.verdict)
                );
            }
            o.push('\n');
        }
    }
    let _ = writeln!(o, "### Alerts\n");
    note(o, f.alerts_note.as_ref());
    if !f.alerts.is_empty() {
        let _ = writeln!(
            o,
            "| At | Route | Check | About | State | Value | Bound | Message |\n|---|---|---|---|---|---:|---:|---|"
        );
        for a in &f.alerts {
            let _ = writeln!(
                o,
                "| {} | {} | {} | {} | {} | {} | {} | {} |",
                a.at,
                cell(&a.route),
                cell(&a.check),
                cell(&a.subject),
                cell(&a.state),
                num(a.value),
                num(a.bound),
                cell(&a.message)
            );
        }
        o.push('\n');
    }

    let d = &r.drift;
    let _ = writeln!(
        o,
        "## {}\n\nThe period against the reference {} to {}{}.\n",
        SECTIONS[3],
        d.reference.from,
        d.reference.to,
        if d.reference_chosen {
            " (chosen)"
        } else {
            " (the period of the same length just before)"
        }
    );
    note(o, d.note.as_ref());
    for route in &d.routes {
        let _ = writeln!(
            o,
            "### Route {}\n\n{} row(s) in the period, {} in the reference.\n",
            cell(&route.route),
            route.rows,
            route.reference_rows
        );
        note(o, route.note.as_ref());
        if route.features.is_empty() && route.prediction.is_none() {
            continue;
        }
        let _ = writeln!(
            o,
            "| Feature | Kind | PSI | KS | KS p | χ² | χ² p | Missing (period / reference) |\n|---|---|---:|---:|---:|---:|---:|---:|"
        );
        for x in route.features.iter().chain(&route.prediction) {
            let _ = writeln!(
                o,
                "| {} | {} | {} | {} | {} | {} | {} | {} / {} |",
                cell(&x.feature),
                x.kind,
                num(x.psi),
                num(x.ks_statistic),
                num(x.ks_p_value),
                num(x.chi_square),
                num(x.chi_square_p_value),
                x.missing,
                x.reference_missing
            );
        }
        o.push('\n');
    }

    let c = &r.consent;
    let _ = writeln!(o, "## {}\n", SECTIONS[4]);
    note(o, c.note.as_ref());
    if c.total.total > 0 {
        let _ = writeln!(
            o,
            "| Route | Full | Explain only | None | Total |\n|---|---:|---:|---:|---:|"
        );
        for x in c.routes.iter().chain(std::iter::once(&c.total)) {
            let _ = writeln!(
                o,
                "| {} | {} | {} | {} | {} |",
                cell(&x.route),
                x.full,
                x.explain_only,
                x.none,
                x.total
            );
        }
        o.push('\n');
    }

    let v = &r.reviews;
    let _ = writeln!(o, "## {}\n", SECTIONS[5]);
    note(o, v.note.as_ref());
    let _ = writeln!(
        o,
        "- Predictions sent to review: {}\n- Still pending at the end of the period: {}\n- Overrides: {}\n- Outcomes reported in the period: {}\n- Contested by customers: {} (decided {}, overturned {}, median hours to a decision: {})",
        v.flagged,
        v.pending_at_end,
        v.overrides,
        v.outcomes_reported,
        v.contests.contested,
        v.contests.decided,
        v.contests.overturned,
        v.contests
            .median_hours_to_decision
            .map_or_else(|| "—".to_owned(), |h| format!("{h:.1}"))
    );
    for (reason, n) in &v.by_reason {
        let _ = writeln!(o, "- Reason `{}`: {n}", cell(reason));
    }
    for (decision, n) in &v.decisions {
        let _ = writeln!(o, "- Decision `{}`: {n}", cell(decision));
    }
    o.push('\n');

    let e = &r.erasures;
    let _ = writeln!(o, "## {}\n", SECTIONS[6]);
    note(o, e.note.as_ref());
    for (reason, n) in &e.erased_records {
        let _ = writeln!(
            o,
            "- Predictions of the period erased, `{}`: {n}",
            cell(reason)
        );
    }
    for a in &e.actions {
        let _ = writeln!(
            o,
            "- Subject erasure at {} by {}: {} record(s)",
            a.at,
            cell(&a.actor),
            a.erased_records
                .map_or_else(|| "—".to_owned(), |n| n.to_string())
        );
    }
    o.push('\n');

    let x = &r.verification;
    let _ = writeln!(o, "## {}\n", SECTIONS[7]);
    if x.ok {
        let _ = writeln!(
            o,
            "**Intact.** {} record(s), {} checkpoint(s) verified, {} erased by {} authenticated erasure(s); last seq {}, hash `{}`.",
            x.records,
            x.checkpoints,
            x.erased,
            x.erasures,
            x.last_seq,
            x.last_hash.as_deref().unwrap_or_default()
        );
        if x.reviews_not_applied > 0 {
            let _ = writeln!(
                o,
                "\n{} record(s) show a review state older than the latest review decision chained for them.",
                x.reviews_not_applied
            );
        }
        if x.appended_while_verifying > 0 {
            let _ = writeln!(
                o,
                "\n{} record(s) were appended while the log was verified; authenticated checkpoints cover them.",
                x.appended_while_verifying
            );
        }
        if x.writers.iter().any(|w| !w.writer.is_empty()) {
            let _ = writeln!(
                o,
                "\nEach writer (replica) keeps a chain of its own, verified on its own:\n\n\
                 | Writer | Records | Checkpoints | Erased | Last seq | Last hash | Appended while verifying |\n\
                 |---|---:|---:|---:|---:|---|---:|"
            );
            for w in &x.writers {
                let _ = writeln!(
                    o,
                    "| {} | {} | {} | {} | {} | `{}` | {} |",
                    cell(&w.writer),
                    w.records,
                    w.checkpoints,
                    w.erased,
                    w.last_seq,
                    w.last_hash,
                    w.appended_while_verifying
                );
            }
        }
    } else {
        let _ = writeln!(
            o,
            "**Not intact.** {}",
            cell(x.error.as_deref().unwrap_or_default())
        );
    }
    let _ = writeln!(
        o,
        "\n## {}\n\n| Duty | Answers | Status | What this deployment does |\n|---|---|---|---|",
        SECTIONS[8]
    );
    for d in &r.duties.duties {
        let _ = writeln!(
            o,
            "| {} | {} | {} | {} |",
            d.duty,
            d.answers,
            d.status.label(),
            cell(&d.what)
        );
    }
    let _ = writeln!(
        o,
        "\n## Definitions of the figures\n\nu is an unprivileged group, p the privileged one; \
         L and U are the lower and upper ends of an interval; intervals are at the route's \
         monitor confidence (default 0.95). In more words: `{}`.\n",
        crate::DEFINITIONS_LINK
    );
    for d in crate::DEFINITIONS {
        let _ = writeln!(o, "- **{}**: {}", d.figure, d.definition);
    }
    out
}
