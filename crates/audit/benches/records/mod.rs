//! What the audit writer benchmarks write: realistic records as the proxy writes them
//! for an explained credit request, the same for every backend.

use serde_json::json;
use sidelight_audit::{Consent, Keys, Record};

const MASTER: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

const NAMES: [&str; 20] = [
    "checking_status",
    "duration",
    "credit_history",
    "purpose",
    "credit_amount",
    "savings_status",
    "employment",
    "installment_commitment",
    "personal_status",
    "other_parties",
    "residence_since",
    "property_magnitude",
    "age",
    "other_payment_plans",
    "housing",
    "existing_credits",
    "job",
    "num_dependents",
    "own_telephone",
    "foreign_worker",
];

/// A deterministic pseudo-random number in [0, 1) from `i` and `k` (SplitMix64).
fn unit(i: usize, k: usize) -> f64 {
    let mut z = (i as u64)
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add((k as u64).wrapping_mul(0xBF58_476D_1CE4_E5B9));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
}

/// One record as the proxy writes it for an explained KServe v1 credit request.
pub(crate) fn record(i: usize) -> Record {
    let categories = [
        "A11", "A12", "A13", "A14", "A30", "A31", "A32", "A40", "A41",
    ];
    let values: Vec<serde_json::Value> = (0..NAMES.len())
        .map(|k| {
            if k % 3 == 0 {
                json!(categories[(unit(i, k) * categories.len() as f64) as usize])
            } else {
                json!((unit(i, k) * 1000.0).round() / 10.0)
            }
        })
        .collect();
    let instance: serde_json::Map<String, serde_json::Value> = NAMES
        .iter()
        .zip(&values)
        .map(|(n, v)| ((*n).to_owned(), v.clone()))
        .collect();
    let request = json!({
        "instances": [instance],
        "parameters": {
            "customer_id": format!("C-{:08}", i * 7919 % 100_000_000),
            "channel": "branch-portal",
            "correlation": format!("req-{i:012}"),
            "applicant": {
                "name": format!("Applicant {i}"),
                "address": format!("{} Example Street, Flat {}, 10115 Berlin", i % 300, i % 40),
                "email": format!("applicant.{i}@example.invalid"),
                "phone": format!("+49 30 {:07}", i * 31 % 10_000_000),
            },
            "session": {
                "user_agent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko)",
                "submitted_at": format!("2026-11-27T10:{:02}:{:02}Z", i / 60 % 60, i % 60),
                "consent": "full",
                "referrer": format!("https://portal.example.invalid/apply/step-4?campaign=winter-{}&ref=partner-{}", i % 12, i % 97),
                "notes": "Applicant asked for a decision by phone; documents uploaded via the portal.",
            },
        },
    });
    let score = unit(i, 99);
    let shap: Vec<f64> = (0..NAMES.len())
        .map(|k| (unit(i, k + 100) - 0.5) / 10.0)
        .collect();
    let mut r = Record::new(
        format!("req-{i:012}"),
        1_795_000_000_000 + i as i64,
        "credit",
        "credit-model:7",
    );
    r.request = Some(serde_json::to_vec(&request).unwrap());
    r.response = Some(serde_json::to_vec(&json!({"predictions": [score]})).unwrap());
    r.features = Some(json!({"names": NAMES, "rows": [values]}));
    r.outputs = Some(json!([[score]]));
    r.surrogate_version = Some(3);
    r.attributions = Some(json!([{
        "surrogate_version": 3,
        "base_value": 0.42,
        "prediction": score,
        "values": [shap],
        "names": NAMES,
    }]));
    r.texts = Some(vec![format!(
        "The score of {score:.2} is mostly due to credit_amount and duration; \
         checking_status lowered it by {:.3}.",
        shap[0].abs()
    )]);
    r.consent = Consent::Full;
    r.subject = Some(format!("ps_{:032x}", i % 5000));
    r
}

pub(crate) fn keys() -> Keys {
    Keys::parse(MASTER.as_bytes(), "bench").unwrap()
}
