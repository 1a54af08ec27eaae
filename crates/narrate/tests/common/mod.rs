//! The demo's credit model as the narrator sees it: mirrors `credit_features()` in
//! crates/cli/src/demo.rs (names, display names, units, protected flags, actionable
//! bounds), with typical values from the German credit data.

#![allow(dead_code, unreachable_pub)]

use sidelight_explain::FeatureKind;
use sidelight_narrate::{FeatureInfo, FtlSource, Narrator, Typical, ValueFormat};

pub fn credit_features() -> Vec<FeatureInfo> {
    use FeatureKind::{Categorical, Numeric};
    let feature = |name: &str, kind, display: &str, unit: Option<&str>| {
        let mut f = FeatureInfo::new(name, kind);
        f.display_name = Some(display.to_owned());
        f.unit = unit.map(str::to_owned);
        f.format = if kind == Categorical {
            ValueFormat::Category
        } else {
            ValueFormat::from_unit(unit)
        };
        f
    };
    let protected = |mut f: FeatureInfo| {
        f.protected = true;
        f.customer_visible = false;
        f
    };
    let actionable = |mut f: FeatureInfo, min: f64, max: f64| {
        f.actionable = true;
        f.min = Some(min);
        f.max = Some(max);
        f
    };
    let typical = |mut f: FeatureInfo, p25: f64, median: f64, p75: f64| {
        f.typical = Some(Typical { p25, median, p75 });
        f
    };
    vec![
        feature(
            "checking_account",
            Categorical,
            "checking account balance",
            None,
        ),
        typical(
            actionable(
                feature("duration_months", Numeric, "loan duration", Some("months")),
                4.0,
                72.0,
            ),
            12.0,
            18.0,
            24.0,
        ),
        feature("credit_history", Categorical, "credit history", None),
        feature("purpose", Categorical, "purpose of the loan", None),
        typical(
            actionable(
                feature("credit_amount", Numeric, "loan amount", Some("DM")),
                250.0,
                20000.0,
            ),
            1366.0,
            2320.0,
            3972.0,
        ),
        feature("savings", Categorical, "savings", None),
        feature("employed_since", Categorical, "time in current job", None),
        typical(
            feature(
                "installment_rate_pct_income",
                Numeric,
                "instalment as a share of income",
                Some("%"),
            ),
            2.0,
            3.0,
            4.0,
        ),
        protected(feature(
            "personal_status_sex",
            Categorical,
            "personal status and sex",
            None,
        )),
        feature(
            "other_debtors",
            Categorical,
            "other debtors or guarantors",
            None,
        ),
        typical(
            feature(
                "residence_since_years",
                Numeric,
                "years at current address",
                Some("years"),
            ),
            2.0,
            3.0,
            4.0,
        ),
        feature("property", Categorical, "property", None),
        protected(typical(
            feature("age_years", Numeric, "age", Some("years")),
            27.0,
            33.0,
            42.0,
        )),
        feature(
            "other_installment_plans",
            Categorical,
            "other instalment plans",
            None,
        ),
        feature("housing", Categorical, "housing", None),
        typical(
            feature(
                "existing_credits",
                Numeric,
                "existing credits at this bank",
                None,
            ),
            1.0,
            1.0,
            2.0,
        ),
        feature("job", Categorical, "job", None),
        typical(
            feature("dependents", Numeric, "dependents", None),
            1.0,
            1.0,
            1.0,
        ),
        feature("telephone", Categorical, "telephone", None),
        protected(feature(
            "foreign_worker",
            Categorical,
            "foreign worker",
            None,
        )),
    ]
}

/// The built-in narrator plus the credit model's words in English and German.
pub fn credit_narrator() -> Narrator {
    let sources = vec![
        FtlSource::new(
            "en",
            "credit/en.ftl",
            include_str!("../fixtures/credit/en.ftl"),
        ),
        FtlSource::new(
            "de",
            "credit/de.ftl",
            include_str!("../fixtures/credit/de.ftl"),
        ),
    ];
    Narrator::builtin()
        .and_then(|n| n.with_overrides(sources))
        .unwrap_or_else(|e| panic!("credit fixtures: {e}"))
}
