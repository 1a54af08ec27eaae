//! Ranked answers matched to their candidates: the first piece of ranking routes
//! (a recommendation API answering a ranked list of `{id, score}` for the candidates
//! its request listed). A ranked answer is matched to the candidates by id, and only
//! when the match is a bijection: every candidate's id is unique, and every answered
//! id names exactly one candidate. Anything else is refused with where it went wrong,
//! so that an item is never paired with another item's score (and so with another
//! item's explanation).

use std::collections::HashMap;

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
