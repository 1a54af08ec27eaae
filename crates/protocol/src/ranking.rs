//! Ranking requests and answers, the first pieces of ranking routes (a recommendation
//! API: the request carries the customer's context once and a list of candidate items;
//! the answer scores them, or ranks them as `{id, score}`). A request is read into one
//! row per candidate, context joined to item. A ranked answer is matched to the
//! candidates by id, and only
//! when the match is a bijection: every candidate's id is unique, and every answered
//! id names exactly one candidate. Anything else is refused with where it went wrong,
//! so that an item is never paired with another item's score (and so with another
//! item's explanation).

use std::collections::HashMap;

use crate::json::{self, Path};
use crate::rows::wrong;
use crate::{AdapterError, Rows, Side, Value};

/// Where a ranking request keeps its parts, as JSON Pointers (RFC 6901).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RankingShape {
    /// The features every candidate shares (the customer, the session): an object.
    pub context: String,
    /// The candidates: an array of objects (or of arrays, positional).
    pub candidates: String,
    /// The member of each candidate object that holds its id, which is not a feature.
    pub id_field: Option<String>,
}

/// The prefix of a context feature's name in a ranking route's rows.
pub const CONTEXT_PREFIX: &str = "context.";
/// The prefix of a candidate feature's name in a ranking route's rows.
pub const ITEM_PREFIX: &str = "item.";

/// A ranking request read into rows: one row per candidate, the context's features
/// first (`context.<name>`), then the candidate's (`item.<name>`), so that the two sides'
/// names never meet; and each candidate's id when the shape names an id field.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RankingRows {
    /// One row per candidate, in request order.
    pub rows: Rows,
    /// How many of the leading columns are the context's.
    pub context_columns: usize,
    /// Per candidate, its id as text (a number id as its JSON text).
    pub ids: Option<Vec<String>>,
}

/// Reads a ranking request: the context object and the candidates, joined row by row.
pub fn parse_ranking_request(
    shape: &RankingShape,
    body: &[u8],
) -> Result<RankingRows, AdapterError> {
    let root = json::parse(body, Side::Request)?;
    ranking_rows(shape, &root)
}

/// Every candidate's row of a parsed request (ids dropped), the names checked as
/// `parse_request` checks them.
pub(crate) fn request_rows(
    shape: &RankingShape,
    root: &json::Node<'_>,
) -> Result<Rows, AdapterError> {
    let rows = ranking_rows(shape, root)?.rows;
    let mut seen = std::collections::HashSet::with_capacity(rows.names.len());
    if let Some(name) = rows.names.iter().find(|n| !seen.insert(n.as_str())) {
        return Err(AdapterError::DuplicateName { name: name.clone() });
    }
    Ok(rows)
}

/// A ranking request's own problem, with its stable code.
fn refused(reason: &'static str, message: String) -> AdapterError {
    AdapterError::Ranking { reason, message }
}

fn ranking_rows(shape: &RankingShape, root: &json::Node<'_>) -> Result<RankingRows, AdapterError> {
    let context = crate::pointer::request(root, &shape.context).map_err(|e| match e {
        AdapterError::MissingField { .. } => refused(
            "ranking_context_not_found",
            format!("request body has no context at {:?}", shape.context),
        ),
        other => other,
    })?;
    if context.rows.len() != 1 {
        return Err(refused(
            "ranking_context_not_object",
            format!(
                "request body has {} rows at {:?} where one object of the features the candidates share was expected",
                context.rows.len(),
                shape.context
            ),
        ));
    }
    let mut candidates = crate::pointer::request(root, &shape.candidates).map_err(|e| match e {
        AdapterError::MissingField { .. } => refused(
            "ranking_candidates_not_found",
            format!("request body has no candidates at {:?}", shape.candidates),
        ),
        other => other,
    })?;
    let ids = match &shape.id_field {
        None => None,
        Some(field) => {
            let Some(k) = candidates.names.iter().position(|n| n == field) else {
                return Err(refused(
                    "ranking_candidate_without_id",
                    format!(
                        "no candidate at {:?} has the id field {field:?}",
                        shape.candidates
                    ),
                ));
            };
            candidates.names.remove(k);
            let mut ids = Vec::with_capacity(candidates.rows.len());
            for (i, row) in candidates.rows.iter_mut().enumerate() {
                let id = match row.remove(k) {
                    Value::Text(text) => text,
                    Value::Number(n) if n.is_finite() => json_number_text(n),
                    _ => {
                        return Err(refused(
                            "ranking_candidate_without_id",
                            format!(
                                "candidate {i} at {:?} has no id in {field:?}",
                                shape.candidates
                            ),
                        ));
                    }
                };
                ids.push(id);
            }
            // Two candidates of one id could be told apart by nobody who reads an
            // explanation by id: never a guess at which is which.
            let mut seen: HashMap<&str, usize> = HashMap::with_capacity(ids.len());
            for (i, id) in ids.iter().enumerate() {
                if let Some(first) = seen.insert(id.as_str(), i) {
                    return Err(refused(
                        "ranking_duplicate_id",
                        PairError::DuplicateCandidate { first, second: i }.to_string(),
                    ));
                }
            }
            Some(ids)
        }
    };
    let context_row = context.rows.into_iter().next().unwrap_or_default();
    let names: Vec<String> = context
        .names
        .iter()
        .map(|n| format!("{CONTEXT_PREFIX}{n}"))
        .chain(candidates.names.iter().map(|n| format!("{ITEM_PREFIX}{n}")))
        .collect();
    let rows = candidates
        .rows
        .into_iter()
        .map(|item| context_row.iter().cloned().chain(item).collect())
        .collect();
    Ok(RankingRows {
        rows: Rows {
            names,
            rows,
            positional: context.positional || candidates.positional,
        },
        context_columns: context.names.len(),
        ids,
    })
}

/// Where a ranking route's answer keeps the scores.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RankingAnswer {
    /// One score per candidate, in request order, at this pointer (as a plain batch
    /// answers).
    Scores(String),
    /// A ranked list of objects at `list`, each naming its candidate in member `id` and
    /// its score in member `score`; matched to the candidates by id.
    Ranked {
        /// Where the list is.
        list: String,
        /// The member holding a candidate's id.
        id: String,
        /// The member holding its score.
        score: String,
    },
}

/// Why a ranking answer gives no score per candidate.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RankingError {
    /// The body is not what the route's answer shape says.
    #[error(transparent)]
    Body(#[from] AdapterError),
    /// The ranked ids do not match the candidates one to one.
    #[error(transparent)]
    Pairing(#[from] PairError),
    /// The answer is by id, but the route names no id field for its candidates.
    #[error("the answer ranks candidates by id, but the route's candidates have no id field")]
    NoIds,
}

impl RankingError {
    /// A short stable code for the `x-sidelight-status` header and metrics labels.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Body(e) => e.reason(),
            Self::Pairing(PairError::Length { .. }) => "row_count_mismatch",
            Self::Pairing(PairError::DuplicateCandidate { .. }) => "ranking_duplicate_id",
            Self::Pairing(PairError::DuplicateAnswer { .. }) => "ranking_duplicate_answer",
            Self::Pairing(PairError::UnknownId(_)) => "ranking_unknown_id",
            Self::NoIds => "ranking_without_ids",
        }
    }
}

/// A ranking answer read: each candidate's score in request order, and for a ranked
/// list the candidates in the answer's order (what the customer is shown, which need
/// not be the order of the scores: a business may re-rank).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RankingOutputs {
    /// One score per candidate, in request order.
    pub outputs: crate::Outputs,
    /// With a ranked answer: the candidates' positions, best first.
    pub order: Option<Vec<usize>>,
}

/// As [`parse_ranking_response`], with the ranked answer's order.
pub fn parse_ranking_answer(
    answer: &RankingAnswer,
    body: &[u8],
    ids: Option<&[String]>,
    candidates: usize,
) -> Result<RankingOutputs, RankingError> {
    let root = json::parse(body, Side::Response)?;
    let outputs = response_outputs(answer, &root, ids, candidates)?;
    let order = match (answer, ids) {
        (RankingAnswer::Ranked { list, id, .. }, Some(ids)) => {
            let position: HashMap<&str, usize> = ids
                .iter()
                .enumerate()
                .map(|(i, id)| (id.as_str(), i))
                .collect();
            let entries = match root.pointer(list) {
                Ok(Some(json::Node::Array(entries))) => entries,
                _ => {
                    return Err(AdapterError::MissingField {
                        side: Side::Response,
                        path: list.clone(),
                    }
                    .into());
                }
            };
            // The pairing above succeeded: every entry names one candidate, once.
            let order: Option<Vec<usize>> = entries
                .iter()
                .map(|entry| {
                    let text = match entry.get(id)? {
                        json::Node::String(text) => text.to_string(),
                        json::Node::Number(n) => json_number_text(*n),
                        _ => return None,
                    };
                    position.get(text.as_str()).copied()
                })
                .collect();
            Some(order.ok_or(RankingError::NoIds)?)
        }
        _ => None,
    };
    Ok(RankingOutputs { outputs, order })
}

/// Each candidate's score, in request order, from a ranking answer; `ids` are the
/// candidates' ids (see [`RankingRows::ids`]), `candidates` how many there were.
pub fn parse_ranking_response(
    answer: &RankingAnswer,
    body: &[u8],
    ids: Option<&[String]>,
    candidates: usize,
) -> Result<crate::Outputs, RankingError> {
    let root = json::parse(body, Side::Response)?;
    response_outputs(answer, &root, ids, candidates)
}

/// [`parse_ranking_response`] of a parsed body.
pub(crate) fn response_outputs(
    answer: &RankingAnswer,
    root: &json::Node<'_>,
    ids: Option<&[String]>,
    candidates: usize,
) -> Result<crate::Outputs, RankingError> {
    match answer {
        RankingAnswer::Scores(pointer) => Ok(crate::pointer::response(root, pointer, candidates)?),
        RankingAnswer::Ranked { list, id, score } => {
            let ids = ids.ok_or(RankingError::NoIds)?;
            let node = match root.pointer(list) {
                Ok(Some(node)) => node,
                Ok(None) => {
                    return Err(AdapterError::MissingField {
                        side: Side::Response,
                        path: list.clone(),
                    }
                    .into());
                }
                Err(()) => {
                    return Err(AdapterError::InvalidPointer {
                        pointer: list.clone(),
                    }
                    .into());
                }
            };
            let json::Node::Array(items) = node else {
                return Err(wrong(
                    Side::Response,
                    Path::Root(list),
                    "an array of ranked entries",
                )
                .into());
            };
            let mut entries: Vec<(String, f64)> = Vec::with_capacity(items.len());
            for (k, item) in items.iter().enumerate() {
                let missing = |member: &str| AdapterError::MissingField {
                    side: Side::Response,
                    path: format!("{list}/{k}/{member}"),
                };
                let entry_id = match item.get(id) {
                    Some(json::Node::String(text)) => text.to_string(),
                    Some(json::Node::Number(n)) if n.is_finite() => json_number_text(*n),
                    _ => return Err(missing(id).into()),
                };
                let entry_score = item
                    .get(score)
                    .and_then(json::Node::as_output_number)
                    .ok_or_else(|| missing(score))?;
                entries.push((entry_id, entry_score));
            }
            let candidate_ids: Vec<&str> = ids.iter().map(String::as_str).collect();
            let answered: Vec<(&str, f64)> =
                entries.iter().map(|(i, s)| (i.as_str(), *s)).collect();
            let scores = pair_by_id(&candidate_ids, &answered)?;
            Ok(crate::Outputs {
                rows: scores.into_iter().map(|s| vec![s]).collect(),
            })
        }
    }
}

/// A number id as JSON writes it (`7`, not `7.0`).
fn json_number_text(n: f64) -> String {
    if n.fract() == 0.0 && n.abs() < 9.0e15 {
        format!("{n:.0}")
    } else {
        n.to_string()
    }
}

/// Why a ranked answer cannot be matched to its candidates. Ids are never quoted: they
/// may be personal (a customer's own items).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PairError {
    /// Two candidates share an id (their 0-based positions).
    #[error("candidates {first} and {second} have the same id")]
    DuplicateCandidate {
        /// The first candidate with the id.
        first: usize,
        /// The second.
        second: usize,
    },
    /// The answer names an id twice (its 0-based positions in the answer).
    #[error("answer entries {first} and {second} name the same id")]
    DuplicateAnswer {
        /// The first entry with the id.
        first: usize,
        /// The second.
        second: usize,
    },
    /// An answer entry names no candidate (its 0-based position).
    #[error("answer entry {0} names no candidate")]
    UnknownId(usize),
    /// The answer has another number of entries than there are candidates.
    #[error("the answer has {answered} entries for {candidates} candidates")]
    Length {
        /// Candidates in the request.
        candidates: usize,
        /// Entries in the answer.
        answered: usize,
    },
}

/// Each candidate's score, in candidate (request) order, from a ranked answer of
/// `(id, score)` pairs; an error unless the answer's ids match the candidates' one to
/// one.
pub fn pair_by_id(candidate_ids: &[&str], answer: &[(&str, f64)]) -> Result<Vec<f64>, PairError> {
    let mut position: HashMap<&str, usize> = HashMap::with_capacity(candidate_ids.len());
    for (i, id) in candidate_ids.iter().enumerate() {
        if let Some(first) = position.insert(id, i) {
            return Err(PairError::DuplicateCandidate { first, second: i });
        }
    }
    if answer.len() != candidate_ids.len() {
        return Err(PairError::Length {
            candidates: candidate_ids.len(),
            answered: answer.len(),
        });
    }
    let mut scores: Vec<Option<(usize, f64)>> = vec![None; candidate_ids.len()];
    for (k, (id, score)) in answer.iter().enumerate() {
        let &i = position.get(id).ok_or(PairError::UnknownId(k))?;
        if let Some((first, _)) = scores[i] {
            return Err(PairError::DuplicateAnswer { first, second: k });
        }
        scores[i] = Some((k, *score));
    }
    // Equal lengths, no duplicate on either side, and every entry matched: every
    // candidate has its score.
    Ok(scores
        .into_iter()
        .map(|s| s.map_or(f64::NAN, |(_, score)| score))
        .collect())
}

#[cfg(test)]
mod tests {

    /// A ranking route's row written back as a request of its own (the probe check and
    /// distillation ask the model this way) reads back as the same row, and a ranked
    /// answer to it pairs by the position the writer gave as id.
    #[test]
    fn one_row_written_as_a_ranking_request_reads_back() {
        let protocol = crate::Protocol::Ranking {
            shape: RankingShape {
                context: "/request/customer".into(),
                candidates: "/request/items".into(),
                id_field: Some("sku".into()),
            },
            answer: RankingAnswer::Ranked {
                list: "/ranking".into(),
                id: "sku".into(),
                score: "score".into(),
            },
        };
        let names: Vec<String> = ["context.age", "context.city", "item.price"]
            .iter()
            .map(|n| (*n).to_owned())
            .collect();
        let row = vec![
            Value::Number(41.0),
            Value::Text("Oslo".into()),
            Value::Number(9.5),
        ];
        let body = crate::write_request(&protocol, &names, std::slice::from_ref(&row)).unwrap();
        let read = crate::parse_request(&protocol, &body).unwrap();
        assert_eq!(read.names, names);
        assert_eq!(read.rows, vec![row.clone()]);
        let outputs = crate::parse_response(
            &protocol,
            br#"{"ranking": [{"sku": "0", "score": 0.7}]}"#,
            1,
        )
        .unwrap();
        assert_eq!(outputs.rows, vec![vec![0.7]]);
        // Two rows at once would need two contexts: refused, not merged.
        assert!(crate::write_request(&protocol, &names, &[row.clone(), row]).is_err());
        let wrong =
            crate::parse_response(&protocol, br#"{"ranking": [{"sku": "9", "score": 1}]}"#, 1)
                .unwrap_err();
        assert_eq!(wrong.reason(), "ranking_unknown_id");
    }

    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// A permutation of the candidates' ids pairs every score with its own
        /// candidate, whatever the order of the answer.
        #[test]
        fn a_permuted_answer_pairs_each_score_with_its_candidate(
            n in 1usize..20,
            seed in any::<u64>(),
        ) {
            let ids: Vec<String> = (0..n).map(|i| format!("item-{i}")).collect();
            let candidates: Vec<&str> = ids.iter().map(String::as_str).collect();
            let mut order: Vec<usize> = (0..n).collect();
            // A permutation from the seed (Fisher–Yates with a small LCG).
            let mut state = seed | 1;
            for i in (1..n).rev() {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                let j = usize::try_from(state >> 33).unwrap_or(0) % (i + 1);
                order.swap(i, j);
            }
            let answer: Vec<(&str, f64)> = order.iter().map(|&i| (candidates[i], i as f64)).collect();
            let scores = pair_by_id(&candidates, &answer);
            prop_assert_eq!(scores, Ok((0..n).map(|i| i as f64).collect::<Vec<_>>()));
        }

        /// Any answer is either a bijection onto the candidates (and each score lands
        /// on the candidate its entry named) or refused.
        #[test]
        fn an_answer_is_a_bijection_or_refused(
            candidates in proptest::collection::vec(0u8..6, 0..6),
            answer in proptest::collection::vec((0u8..8, -10.0f64..10.0), 0..7),
        ) {
            let candidate_ids: Vec<String> = candidates.iter().map(|c| c.to_string()).collect();
            let answer_ids: Vec<String> = answer.iter().map(|(id, _)| id.to_string()).collect();
            let c: Vec<&str> = candidate_ids.iter().map(String::as_str).collect();
            let a: Vec<(&str, f64)> = answer_ids.iter().map(String::as_str).zip(answer.iter().map(|(_, s)| *s)).collect();
            match pair_by_id(&c, &a) {
                Ok(scores) => {
                    prop_assert_eq!(scores.len(), c.len());
                    for (id, score) in &a {
                        let i = c.iter().position(|x| x == id).unwrap_or(usize::MAX);
                        prop_assert!(i < c.len());
                        prop_assert_eq!(scores[i].to_bits(), score.to_bits());
                    }
                }
                Err(_) => {
                    let mut sorted_c = c.clone();
                    sorted_c.sort_unstable();
                    let mut sorted_a: Vec<&str> = a.iter().map(|(id, _)| *id).collect();
                    sorted_a.sort_unstable();
                    let unique = sorted_c.windows(2).all(|w| w[0] != w[1]);
                    // Refused only when it is not a bijection.
                    prop_assert!(!(unique && sorted_c == sorted_a));
                }
            }
        }
    }

    fn shape(id: Option<&str>) -> RankingShape {
        RankingShape {
            context: "/customer".to_owned(),
            candidates: "/items".to_owned(),
            id_field: id.map(str::to_owned),
        }
    }

    #[test]
    fn a_ranking_request_joins_the_context_to_each_candidate_and_keeps_the_ids_apart() {
        let body = br#"{"customer": {"age_band": "30-40", "visits": 12},
            "items": [{"sku": "tent-2", "price": 120.0, "weight_kg": 2.1},
                      {"sku": 77, "price": 80.0, "weight_kg": 3.4}]}"#;
        let read = parse_ranking_request(&shape(Some("sku")), body).unwrap();
        assert_eq!(
            read.rows.names,
            [
                "context.age_band",
                "context.visits",
                "item.price",
                "item.weight_kg"
            ]
        );
        assert_eq!(read.context_columns, 2);
        assert_eq!(read.ids, Some(vec!["tent-2".to_owned(), "77".to_owned()]));
        assert_eq!(
            read.rows.rows[1],
            [
                Value::Text("30-40".to_owned()),
                Value::Number(12.0),
                Value::Number(80.0),
                Value::Number(3.4)
            ]
        );
    }

    #[test]
    fn a_ranking_request_that_does_not_fit_its_shape_says_where() {
        let code = |body: &[u8], id: Option<&str>| {
            parse_ranking_request(&shape(id), body)
                .map(|_| ())
                .unwrap_err()
                .reason()
        };
        let no_context = br#"{"items": [{"sku": "a", "price": 1}]}"#;
        assert_eq!(code(no_context, None), "ranking_context_not_found");
        let many_contexts = br#"{"customer": [{"a": 1}, {"a": 2}], "items": [{"price": 1}]}"#;
        assert_eq!(code(many_contexts, None), "ranking_context_not_object");
        let no_items = br#"{"customer": {"a": 1}}"#;
        assert_eq!(code(no_items, None), "ranking_candidates_not_found");
        let no_id = br#"{"customer": {"a": 1}, "items": [{"sku": "a", "price": 1}, {"price": 2}]}"#;
        let error = parse_ranking_request(&shape(Some("sku")), no_id).unwrap_err();
        assert_eq!(error.reason(), "ranking_candidate_without_id");
        // The message says where, never which id.
        assert!(error.to_string().contains("candidate 1"), "{error}");
        let twice = br#"{"customer": {"a": 1}, "items": [{"sku": "a", "price": 1}, {"sku": "a", "price": 2}]}"#;
        let error = parse_ranking_request(&shape(Some("sku")), twice).unwrap_err();
        assert_eq!(error.reason(), "ranking_duplicate_id");
        assert!(!error.to_string().contains("\"a\""), "{error}");
    }

    /// A ranked answer gives the order the customer is shown, whatever the scores say.
    #[test]
    fn a_ranked_answer_keeps_its_own_order() {
        let ids = vec!["a".to_owned(), "b".to_owned(), "c".to_owned()];
        let ranked = RankingAnswer::Ranked {
            list: "/r".to_owned(),
            id: "id".to_owned(),
            score: "s".to_owned(),
        };
        // Re-ranked by the business: b first although c scores higher.
        let body =
            br#"{"r": [{"id": "b", "s": 0.5}, {"id": "c", "s": 0.9}, {"id": "a", "s": 0.1}]}"#;
        let read = parse_ranking_answer(&ranked, body, Some(&ids), 3).unwrap();
        assert_eq!(read.order, Some(vec![1, 2, 0]));
        assert_eq!(read.outputs.rows, [vec![0.1], vec![0.5], vec![0.9]]);
        let scores = RankingAnswer::Scores("/s".to_owned());
        let read = parse_ranking_answer(&scores, br#"{"s": [1, 2, 3]}"#, None, 3).unwrap();
        assert_eq!(read.order, None);
    }

    #[test]
    fn a_ranked_answer_is_read_back_into_request_order_by_id() {
        let ids = vec!["tent-2".to_owned(), "77".to_owned(), "mat".to_owned()];
        let ranked = RankingAnswer::Ranked {
            list: "/recommendations".to_owned(),
            id: "item_id".to_owned(),
            score: "score".to_owned(),
        };
        let body = br#"{"recommendations": [{"item_id": 77, "score": 0.9},
            {"item_id": "mat", "score": 0.5}, {"item_id": "tent-2", "score": 0.2}]}"#;
        let out = parse_ranking_response(&ranked, body, Some(&ids), 3).unwrap();
        assert_eq!(out.rows, [vec![0.2], vec![0.9], vec![0.5]]);
        // An id that names no candidate, or a short list: refused, never paired wrong.
        let stranger = br#"{"recommendations": [{"item_id": 78, "score": 0.9},
            {"item_id": "mat", "score": 0.5}, {"item_id": "tent-2", "score": 0.2}]}"#;
        let error = parse_ranking_response(&ranked, stranger, Some(&ids), 3).unwrap_err();
        assert_eq!(error.reason(), "ranking_unknown_id");
        let short = br#"{"recommendations": [{"item_id": "mat", "score": 0.5}]}"#;
        let error = parse_ranking_response(&ranked, short, Some(&ids), 3).unwrap_err();
        assert_eq!(error.reason(), "row_count_mismatch");
        assert_eq!(
            parse_ranking_response(&ranked, body, None, 3).unwrap_err(),
            RankingError::NoIds
        );
        // Scores in request order, as a plain batch answers.
        let scores = RankingAnswer::Scores("/scores".to_owned());
        let out =
            parse_ranking_response(&scores, br#"{"scores": [0.2, 0.9, 0.5]}"#, None, 3).unwrap();
        assert_eq!(out.rows, [vec![0.2], vec![0.9], vec![0.5]]);
    }

    #[test]
    fn each_way_an_answer_can_be_wrong_is_named() {
        assert_eq!(
            pair_by_id(&["a", "a"], &[("a", 1.0), ("a", 2.0)]),
            Err(PairError::DuplicateCandidate {
                first: 0,
                second: 1
            })
        );
        assert_eq!(
            pair_by_id(&["a", "b"], &[("a", 1.0)]),
            Err(PairError::Length {
                candidates: 2,
                answered: 1
            })
        );
        assert_eq!(
            pair_by_id(&["a", "b"], &[("a", 1.0), ("c", 2.0)]),
            Err(PairError::UnknownId(1))
        );
        assert_eq!(
            pair_by_id(&["a", "b"], &[("b", 1.0), ("b", 2.0)]),
            Err(PairError::DuplicateAnswer {
                first: 0,
                second: 1
            })
        );
        assert_eq!(
            pair_by_id(&["a", "b"], &[("b", 2.0), ("a", 1.0)]),
            Ok(vec![1.0, 2.0])
        );
    }
}
