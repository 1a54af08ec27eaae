//! The demo's second model: a small product recommender for an outdoor shop.
//!
//! No public data set of product recommendations ships in a package this demo could
//! depend on, so the catalogue and the customers are generated, deterministically, by
//! the rules below (documented in the README's demo section):
//!
//! - **Catalogue**: 48 products, eight in each of six categories (tent, sleeping bag,
//!   backpack, boots, jacket, stove). Each has a price, a weight, a customer rating
//!   (3.0–5.0) and a tier: `premium` for the dearer half of its category, else
//!   `budget`. SKUs are `SKU-101` … `SKU-148`.
//! - **Customers**: customer `n` has an age (18–74), a share of past purchases that were
//!   outdoor gear, a budget that grows with age (as incomes do), and a membership.
//! - **A request** carries the customer once and 24 candidates from the catalogue.
//!
//! The score is a hand-written function with interactions: campers (a high outdoor
//! share) prefer tents, sleeping bags and backpacks and light ones, others boots and
//! jackets; a price over the budget counts against an item in proportion; a good rating
//! counts for it; members get a small lift on budget items. Age is never read, but the
//! budget follows it, so younger customers are shown fewer premium items: the exposure
//! disparity the demo's fairness monitor is there to surface.

use serde_json::{Value, json};

/// A product of the catalogue.
#[derive(Debug, Clone, PartialEq)]
pub struct Product {
    pub sku: String,
    pub category: &'static str,
    pub price: f64,
    pub weight_kg: f64,
    pub rating: f64,
    pub tier: &'static str,
}

/// A customer of the shop.
#[derive(Debug, Clone, PartialEq)]
pub struct Customer {
    pub age: f64,
    pub outdoor_share: f64,
    pub budget: f64,
    pub member: bool,
}

const CATEGORIES: [(&str, f64, f64); 6] = [
    // (category, base price, base weight)
    ("tent", 180.0, 2.4),
    ("sleeping_bag", 90.0, 1.2),
    ("backpack", 110.0, 1.5),
    ("boots", 130.0, 1.1),
    ("jacket", 150.0, 0.7),
    ("stove", 60.0, 0.4),
];

/// A number in `[0, 1)` from `seed`: the same every run (a 64-bit mix, not a random
/// generator: the demo must replay identically).
fn unit(seed: u64) -> f64 {
    let mut x = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^= x >> 31;
    (x >> 11) as f64 / (1u64 << 53) as f64
}

/// The catalogue, in SKU order.
pub fn catalogue() -> Vec<Product> {
    let mut products = Vec::with_capacity(48);
    for (c, (category, base_price, base_weight)) in CATEGORIES.iter().enumerate() {
        for k in 0..8u64 {
            let n = c as u64 * 8 + k;
            // Within a category, dearer items are the later ones: the top half premium.
            let price = (base_price * (0.6 + 0.15 * k as f64 + 0.1 * unit(n * 3))).round();
            let weight_kg = (base_weight * (0.7 + 0.6 * unit(n * 3 + 1)) * 100.0).round() / 100.0;
            let rating = (30.0 + 20.0 * unit(n * 3 + 2)).round() / 10.0;
            products.push(Product {
                sku: format!("SKU-{}", 101 + n),
                category,
                price,
                weight_kg,
                rating,
                tier: if k >= 4 { "premium" } else { "budget" },
            });
        }
    }
    products
}

/// Customer `n`.
pub fn customer(n: u64) -> Customer {
    let age = (18.0 + 57.0 * unit(n * 7 + 1000)).floor();
    let outdoor_share = (unit(n * 7 + 1001) * 100.0).round() / 100.0;
    // Budget grows with age (incomes do), with spread.
    let budget = (40.0 + 5.0 * (age - 18.0) + 160.0 * unit(n * 7 + 1002)).round();
    Customer {
        age,
        outdoor_share,
        budget,
        member: unit(n * 7 + 1003) < 0.4,
    }
}

/// How well `product` suits `customer` (higher is better).
pub fn score(customer: &Customer, product: &Product) -> f64 {
    let camping = matches!(product.category, "tent" | "sleeping_bag" | "backpack");
    let walking = matches!(product.category, "boots" | "jacket");
    let mut s = 1.0;
    if camping {
        s += 1.6 * customer.outdoor_share;
        // Campers carry what they buy.
        s -= 0.5 * product.weight_kg * customer.outdoor_share;
    }
    if walking {
        s += 1.0 * (1.0 - customer.outdoor_share);
    }
    s += 0.6 * (product.rating - 4.0);
    let over = (product.price - customer.budget).max(0.0);
    s -= 1.5 * over / customer.budget.max(1.0);
    if customer.member && product.tier == "budget" {
        s += 0.2;
    }
    (s * 1e6).round() / 1e6
}

/// The request of customer `n`: the customer once and 24 candidates (every other
/// product, from a place that moves with `n`).
pub fn request(n: u64) -> Value {
    let products = catalogue();
    let c = customer(n);
    let start = (n * 5) as usize;
    let items: Vec<Value> = (0..24)
        .map(|k| {
            let p = &products[(start + k * 2) % products.len()];
            json!({
                "sku": p.sku, "category": p.category, "price": p.price,
                "weight_kg": p.weight_kg, "rating": p.rating, "tier": p.tier,
            })
        })
        .collect();
    json!({
        "customer": {
            "age": c.age, "outdoor_share": c.outdoor_share,
            "budget": c.budget, "member": c.member,
        },
        "items": items,
    })
}

/// Answers a ranking request: every candidate with its score, best first, as
/// `{"recommendations": [{"sku", "score"}, …]}`; or why the request is not one (naming
/// the field, never a value).
pub fn rank(body: &Value) -> Result<Value, String> {
    let c = &body["customer"];
    let number = |v: &Value, field: &str| {
        v.get(field)
            .and_then(Value::as_f64)
            .ok_or_else(|| format!("`{field}` must be a number"))
    };
    let customer = Customer {
        age: number(c, "age")?,
        outdoor_share: number(c, "outdoor_share")?,
        budget: number(c, "budget")?,
        member: c.get("member").and_then(Value::as_bool).unwrap_or(false),
    };
    let items = body["items"]
        .as_array()
        .ok_or_else(|| "`items` must be an array of products".to_owned())?;
    let mut scored = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let sku = item
            .get("sku")
            .and_then(Value::as_str)
            .ok_or_else(|| format!("items[{i}].sku must be a string"))?;
        let text = |field: &str| item.get(field).and_then(Value::as_str).unwrap_or("");
        let product = Product {
            sku: sku.to_owned(),
            category: match text("category") {
                "tent" => "tent",
                "sleeping_bag" => "sleeping_bag",
                "backpack" => "backpack",
                "boots" => "boots",
                "jacket" => "jacket",
                _ => "stove",
            },
            price: number(item, "price").map_err(|e| format!("items[{i}]: {e}"))?,
            weight_kg: number(item, "weight_kg").map_err(|e| format!("items[{i}]: {e}"))?,
            rating: number(item, "rating").map_err(|e| format!("items[{i}]: {e}"))?,
            tier: if text("tier") == "premium" {
                "premium"
            } else {
                "budget"
            },
        };
        scored.push((product.sku.clone(), score(&customer, &product)));
    }
    scored.sort_by(|a, b| b.1.total_cmp(&a.1));
    Ok(json!({
        "model_name": "shop",
        "recommendations": scored
            .into_iter()
            .map(|(sku, score)| json!({ "sku": sku, "score": score }))
            .collect::<Vec<_>>(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_catalogue_and_customers_are_the_same_every_run() {
        let products = catalogue();
        assert_eq!(products.len(), 48);
        assert_eq!(products[0].sku, "SKU-101");
        assert_eq!(products, catalogue());
        assert_eq!(customer(7), customer(7));
        assert!(products.iter().all(|p| (3.0..=5.0).contains(&p.rating)));
    }

    #[test]
    fn a_ranking_is_best_first_and_names_every_candidate() {
        let body = request(3);
        let answer = rank(&body).unwrap();
        let list = answer["recommendations"].as_array().unwrap();
        assert_eq!(list.len(), 24);
        let scores: Vec<f64> = list.iter().map(|r| r["score"].as_f64().unwrap()).collect();
        assert!(scores.windows(2).all(|w| w[0] >= w[1]));
        assert!(rank(&json!({"customer": {}, "items": []})).is_err());
    }

    #[test]
    fn younger_customers_have_smaller_budgets() {
        let (mut young, mut old) = (Vec::new(), Vec::new());
        for n in 0..500 {
            let c = customer(n);
            if c.age < 30.0 {
                young.push(c.budget)
            } else {
                old.push(c.budget)
            }
        }
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
        assert!(mean(&young) + 50.0 < mean(&old));
    }
}
