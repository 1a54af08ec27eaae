#![no_main]
//! Ranking requests and answers. An input is the id field (empty: none), a newline, the
//! request body, a NUL byte, then the answer body; the context and candidates are at
//! `/context` and `/candidates`, a ranked answer at `/ranked` with `id` and `score`.
//! Whatever the bytes: no panic; a request read has one row per candidate, every row as
//! wide as the names, and one id per candidate; an answer read has one score per
//! candidate, by position or by id.

use libfuzzer_sys::fuzz_target;
use sidelight_protocol::{
    RankingAnswer, RankingShape, parse_ranking_request, parse_ranking_response,
};

fuzz_target!(|input: &[u8]| {
    let Some(newline) = input.iter().position(|b| *b == b'\n') else {
        return;
    };
    let Ok(id_field) = std::str::from_utf8(&input[..newline]) else {
        return;
    };
    let rest = &input[newline + 1..];
    let (request, answer) = match rest.iter().position(|b| *b == 0) {
        Some(nul) => (&rest[..nul], &rest[nul + 1..]),
        None => (rest, &[][..]),
    };
    let shape = RankingShape {
        context: "/context".to_owned(),
        candidates: "/candidates".to_owned(),
        id_field: (!id_field.is_empty()).then(|| id_field.to_owned()),
    };
    let Ok(read) = parse_ranking_request(&shape, request) else {
        return;
    };
    let n = read.rows.rows.len();
    assert!(n > 0);
    assert!(
        read.rows
            .rows
            .iter()
            .all(|r| r.len() == read.rows.names.len())
    );
    assert!(read.context_columns <= read.rows.names.len());
    if let Some(ids) = &read.ids {
        assert_eq!(ids.len(), n);
    }
    for answer_shape in [
        RankingAnswer::Scores("/scores".to_owned()),
        RankingAnswer::Ranked {
            list: "/ranked".to_owned(),
            id: "id".to_owned(),
            score: "score".to_owned(),
        },
    ] {
        if let Ok(out) = parse_ranking_response(&answer_shape, answer, read.ids.as_deref(), n) {
            assert_eq!(out.rows.len(), n);
        }
    }
});
