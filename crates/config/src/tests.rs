use super::*;

fn env(pairs: &[(&str, &str)]) -> EnvOverrides {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn write(toml: &str) -> tempfile::NamedTempFile {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), toml).unwrap();
    file
}

#[test]
fn the_example_config_is_valid_and_documents_every_default() {
    let example = include_str!("../../../examples/sidelight.toml");
    let config = Config::from_toml_str(example).unwrap();
    // The example sets each key to its default (plus one route), so a drift between the
    // documentation and the code shows up here.
    let expected = Config {
        routes: config.routes.clone(),
        ..Config::default()
    };
    assert_eq!(config, expected);
    assert!(!config.routes.is_empty());
}

#[test]
fn environment_variables_override_the_file() {
    let file = write("[upstream]\nurl = \"http://127.0.0.1:7000\"\nrequest_timeout = \"5s\"\n");
    let config = Config::load_with_env(
        Some(file.path()),
        env(&[
            ("SIDELIGHT_UPSTREAM__REQUEST_TIMEOUT", "250ms"),
            ("SIDELIGHT_SERVER__MAX_BODY_BYTES", "4096"),
            ("SIDELIGHT_LOG__FORMAT", "json"),
            ("UNRELATED", "x"),
        ]),
    )
    .unwrap();
    assert_eq!(config.upstream.url, "http://127.0.0.1:7000");
    assert_eq!(config.upstream.request_timeout, Duration::from_millis(250));
    assert_eq!(config.server.max_body_bytes, 4096);
    assert_eq!(config.log.format, LogFormat::Json);
}

#[test]
fn an_unknown_key_is_named() {
    let err = Config::from_toml_str("[upstream]\nulr = \"http://x\"\n").unwrap_err();
    let text = err.to_string();
    assert!(text.contains("ulr"), "{text}");
    assert!(text.contains("upstream"), "{text}");
}

#[test]
fn a_misspelt_key_is_named_as_written_with_the_closest_valid_one() {
    let file = write("[server]\nshutdown_grase = \"5s\"\n");
    let text = Config::load_with_env(Some(file.path()), Vec::new())
        .unwrap_err()
        .to_string();
    assert!(
        text.starts_with("key `server.shutdown_grase`: unknown key"),
        "{text}"
    );
    assert!(text.contains("did you mean `shutdown_grace`?"), "{text}");
    assert!(text.contains(&file.path().display().to_string()), "{text}");
    assert!(!text.contains("default."), "{text}");
    assert!(!text.contains("\"`"), "{text}");

    // A variant too, and a variable by its own name.
    let text = Config::from_toml_str(
        "[[routes]]\nname = \"a\"\npath_prefix = \"/a\"\n[routes.explain]\nprotocol = \"kserve_v2\"\n",
    )
    .unwrap_err()
    .to_string();
    assert!(text.contains("did you mean `kserve_v1`?"), "{text}");
    let text = Config::load_with_env(None, env(&[("SIDELIGHT_SERVER__LISTN", "0.0.0.0:1")]))
        .unwrap_err()
        .to_string();
    assert!(text.starts_with("key `SIDELIGHT_SERVER__LISTN`"), "{text}");
    assert!(text.contains("did you mean `listen`?"), "{text}");
    // Nothing close: the valid keys are listed instead.
    let text = Config::from_toml_str("[server]\ncolour = true\n")
        .unwrap_err()
        .to_string();
    assert!(text.contains("valid keys here: `listen`"), "{text}");
}

#[test]
fn a_badly_typed_environment_variable_is_named() {
    let err = Config::load_with_env(None, env(&[("SIDELIGHT_SERVER__MAX_BODY_BYTES", "lots")]))
        .unwrap_err();
    let text = err.to_string();
    assert!(text.contains("SIDELIGHT_SERVER__MAX_BODY_BYTES"), "{text}");
}

#[test]
fn invalid_values_name_their_key() {
    let cases = [
        ("[upstream]\nurl = \"ftp://model\"\n", "upstream.url"),
        ("[upstream]\nurl = \"not a url\"\n", "upstream.url"),
        (
            "[upstream]\nconnect_timeout = \"0s\"\n",
            "upstream.connect_timeout",
        ),
        ("[server]\nmax_body_bytes = 0\n", "server.max_body_bytes"),
        (
            "[server]\nlisten = \"127.0.0.1:9000\"\nadmin_listen = \"127.0.0.1:9000\"\n",
            "server.admin_listen",
        ),
        (
            "[[routes]]\nname = \"a\"\npath_prefix = \"v1\"\n",
            "routes[0].path_prefix",
        ),
        (
            "[[routes]]\nname = \"../x\"\npath_prefix = \"/v1\"\n",
            "routes[0].name",
        ),
        (
            "[[routes]]\nname = \"a\"\npath_prefix = \"/a\"\n[[routes]]\nname = \"a\"\npath_prefix = \"/b\"\n",
            "routes[1].name",
        ),
        (
            "[server]\nmax_body_bytes = 10\n[[routes]]\nname = \"a\"\npath_prefix = \"/a\"\n",
            "routes[0].inspect_limit_bytes",
        ),
        (
            "[[routes]]\nname = \"a\"\npath_prefix = \"/a\"\n[routes.monitor]\n",
            "routes[0].monitor",
        ),
        (
            "[[routes]]\nname = \"a\"\npath_prefix = \"/a\"\n[routes.explain]\n\
             protocol = \"kserve_v1\"\n[routes.monitor]\nevery = \"1ms\"\n",
            "routes[0].monitor.every",
        ),
        (
            "[[routes]]\nname = \"a\"\npath_prefix = \"/a\"\n[routes.explain]\n\
             protocol = \"kserve_v1\"\n[[routes.monitor.protected]]\nfeature = \"sex\"\n\
             privileged = \"m\"\nunprivileged = [\"f\", \"m\"]\n",
            "routes[0].monitor.protected[0].unprivileged",
        ),
        (
            "[[routes]]\nname = \"a\"\npath_prefix = \"/a\"\n[routes.explain]\n\
             protocol = \"kserve_v1\"\n[[routes.explain.features]]\nname = \"x\"\n\
             kind = \"numeric\"\n[[routes.explain.groups]]\nname = \"g\"\n\
             features = [\"x\", \"nope\"]\n",
            "routes[0].explain.groups[0].features",
        ),
        // A reason code never covers a protected feature, even through a group.
        (
            "[[routes]]\nname = \"a\"\npath_prefix = \"/a\"\n[routes.explain]\n\
             protocol = \"kserve_v1\"\n[[routes.explain.features]]\nname = \"x\"\n\
             kind = \"numeric\"\n[[routes.explain.features]]\nname = \"age\"\n\
             kind = \"numeric\"\nprotected = true\n[[routes.explain.groups]]\nname = \"g\"\n\
             features = [\"x\", \"age\"]\n[[routes.explain.reasons]]\ncode = \"R1\"\n\
             features = [\"g\"]\n",
            "routes[0].explain.reasons[0].features",
        ),
        (
            "[[routes]]\nname = \"a\"\npath_prefix = \"/a\"\n[routes.explain]\n\
             protocol = \"kserve_v1\"\n[[routes.explain.features]]\nname = \"x\"\n\
             kind = \"numeric\"\n[[routes.explain.reasons]]\ncode = \"R 1\"\n\
             features = [\"x\"]\n",
            "routes[0].explain.reasons[0].code",
        ),
        (
            "[[routes]]\nname = \"a\"\npath_prefix = \"/a\"\n[routes.explain]\n\
             protocol = \"kserve_v1\"\n[[routes.explain.features]]\nname = \"x\"\n\
             kind = \"numeric\"\n[[routes.explain.reasons]]\ncode = \"R1\"\n\
             features = [\"x\"]\n[[routes.explain.reasons]]\ncode = \"R1\"\n\
             features = [\"nope\"]\n",
            "routes[0].explain.reasons[1].code",
        ),
        (
            "[[routes]]\nname = \"a\"\npath_prefix = \"/a\"\n[routes.explain]\n\
             protocol = \"kserve_v1\"\n[routes.explain.distill]\nenabled = true\n\
             synthetic_per_real = 0\n",
            "routes[0].explain.distill.synthetic_per_real",
        ),
        (
            "[[routes]]\nname = \"a\"\npath_prefix = \"/a\"\n[routes.explain]\n\
             protocol = \"kserve_v1\"\n[routes.explain.surrogate]\ngate_confidence = 1.5\n",
            "routes[0].explain.surrogate.gate_confidence",
        ),
        // Ranking routes: the parts a ranking request and answer need, and nothing a
        // plain batch cannot use.
        (
            "[[routes]]\nname = \"a\"\npath_prefix = \"/a\"\n[routes.explain]\n\
             protocol = \"ranking\"\n",
            "routes[0].explain.ranking",
        ),
        (
            "[[routes]]\nname = \"a\"\npath_prefix = \"/a\"\n[routes.explain]\n\
             protocol = \"ranking\"\n[routes.explain.ranking]\ncandidates = \"/items\"\n\
             scores = \"/scores\"\n",
            "routes[0].explain.ranking.context",
        ),
        (
            "[[routes]]\nname = \"a\"\npath_prefix = \"/a\"\n[routes.explain]\n\
             protocol = \"ranking\"\n[routes.explain.ranking]\ncontext = \"/c\"\n\
             candidates = \"/items\"\n",
            "routes[0].explain.ranking.scores",
        ),
        (
            "[[routes]]\nname = \"a\"\npath_prefix = \"/a\"\n[routes.explain]\n\
             protocol = \"ranking\"\n[routes.explain.ranking]\ncontext = \"/c\"\n\
             candidates = \"/items\"\nranked = \"/r\"\n",
            "routes[0].explain.ranking.id_field",
        ),
        (
            "[[routes]]\nname = \"a\"\npath_prefix = \"/a\"\n[routes.explain]\n\
             protocol = \"ranking\"\n[routes.explain.ranking]\ncontext = \"c\"\n\
             candidates = \"/items\"\nscores = \"/s\"\n",
            "routes[0].explain.ranking.context",
        ),
        (
            "[[routes]]\nname = \"a\"\npath_prefix = \"/a\"\n[routes.explain]\n\
             protocol = \"kserve_v1\"\n[routes.explain.ranking]\ncandidates = \"/items\"\n",
            "routes[0].explain.ranking.candidates",
        ),
        (
            "[[routes]]\nname = \"a\"\npath_prefix = \"/a\"\n[routes.explain]\n\
             protocol = \"kserve_v1\"\n[routes.explain.ranking]\ntop_k = 0\n",
            "routes[0].explain.ranking.top_k",
        ),
        (
            "[[routes]]\nname = \"a\"\npath_prefix = \"/a\"\n[routes.explain]\n\
             protocol = \"kserve_v1\"\n[[routes.explain.features]]\nname = \"x\"\n\
             kind = \"numeric\"\n[routes.explain.ranking]\nitem_group = \"brand\"\n",
            "routes[0].explain.ranking.item_group",
        ),
        (
            "[[routes]]\nname = \"a\"\npath_prefix = \"/a\"\n[routes.explain]\n\
             protocol = \"ranking\"\n[routes.explain.ranking]\ncontext = \"\"\n\
             candidates = \"/items\"\nscores = \"/s\"\n",
            "routes[0].explain.ranking.context",
        ),
        (
            "[[routes]]\nname = \"a\"\npath_prefix = \"/a\"\n[routes.explain]\n\
             protocol = \"ranking\"\n[[routes.explain.features]]\nname = \"price\"\n\
             kind = \"numeric\"\n[routes.explain.ranking]\ncontext = \"/c\"\n\
             candidates = \"/items\"\nscores = \"/s\"\n",
            "routes[0].explain.features[0].name",
        ),
        (
            "[[routes]]\nname = \"a\"\npath_prefix = \"/a\"\n[routes.explain]\n\
             protocol = \"ranking\"\n[routes.explain.ranking]\ncontext = \"/c\"\n\
             candidates = \"/items\"\nscores = \"/s\"\nitem_group = \"context.age\"\n",
            "routes[0].explain.ranking.item_group",
        ),
    ];
    for (toml, key) in cases {
        let err = Config::from_toml_str(toml).unwrap_err();
        assert!(
            err.to_string().contains(&format!("`{key}`")),
            "expected the error for {toml:?} to name `{key}`, got: {err}"
        );
    }
}

#[test]
fn a_missing_file_is_an_error_not_the_defaults() {
    let err = Config::load_with_env(Some(Path::new("/nonexistent/sidelight.toml")), Vec::new())
        .unwrap_err();
    assert!(err.to_string().contains("/nonexistent/sidelight.toml"));
}

#[test]
fn a_type_error_in_the_file_names_the_key_and_the_file() {
    let file = write("[server]\nhttp2 = \"sometimes\"\n");
    let err = Config::load_with_env(Some(file.path()), Vec::new()).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("server.http2"), "{text}");
    assert!(text.contains(&file.path().display().to_string()), "{text}");
}

const DIGEST: &str = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";

#[test]
fn admin_tokens_come_from_the_file_the_tokens_file_and_the_environment() {
    let tokens = write(&format!(
        "[[tokens]]\nname = \"from-file\"\nrole = \"auditor\"\nsha256 = \"{}\"\n\
         expires = 2027-01-01T00:00:00Z\n",
        DIGEST.replace('b', "c")
    ));
    let file = write(&format!(
        "[admin]\ntokens_file = \"{}\"\n[[admin.tokens]]\nname = \"inline\"\nrole = \"viewer\"\nsha256 = \"{DIGEST}\"\n",
        tokens.path().display()
    ));
    let config = Config::load_with_env(Some(file.path()), Vec::new()).unwrap();
    let all = config.admin.all_tokens().unwrap();
    let names: Vec<&str> = all.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["inline", "from-file"]);
    assert_eq!(all[1].role, Role::Auditor);
    // A TOML date-time works as well as a string.
    assert_eq!(all[1].expires.as_deref(), Some("2027-01-01T00:00:00Z"));

    let env_tokens =
        format!("[{{name = \"ci\", role = \"admin\", sha256 = \"{DIGEST}\", revoked = true}}]");
    let config = Config::load_with_env(
        None,
        env(&[
            ("SIDELIGHT_ADMIN__TOKENS", &env_tokens),
            ("SIDELIGHT_ADMIN__METRICS_TOKEN_REQUIRED", "true"),
        ]),
    )
    .unwrap();
    assert_eq!(config.admin.tokens.len(), 1);
    assert_eq!(config.admin.tokens[0].role, Role::Admin);
    assert!(config.admin.tokens[0].revoked);
    assert!(config.admin.metrics_token_required);
}

#[test]
fn the_commands_own_variables_are_not_keys() {
    let config = Config::load_with_env(
        None,
        env(&[
            ("SIDELIGHT_CONFIG", "/etc/sidelight.toml"),
            ("SIDELIGHT_ADMIN_TOKEN", "sl_secret"),
        ]),
    )
    .unwrap();
    assert_eq!(config, Config::default());
}

#[test]
fn bad_admin_entries_name_their_key() {
    let entry = |extra: &str| {
        format!(
            "[[admin.tokens]]\nname = \"ops\"\nrole = \"admin\"\nsha256 = \"{DIGEST}\"\n{extra}"
        )
    };
    let cases = [
        (
            "[[admin.tokens]]\nname = \"ops\"\nrole = \"admin\"\nsha256 = \"sl_token\"\n"
                .to_owned(),
            "admin.tokens[0].sha256",
        ),
        (
            entry("expires = \"next year\"\n"),
            "admin.tokens[0].expires",
        ),
        (
            "[[admin.tokens]]\nname = \"a b\"\nrole = \"admin\"\nsha256 = \"".to_owned()
                + DIGEST
                + "\"\n",
            "admin.tokens[0].name",
        ),
        (
            entry("") + &entry("").replace("\"ops\"", "\"ops2\""),
            "admin.tokens[1].sha256",
        ),
        (
            "[server.tls]\ncert_file = \"\"\nkey_file = \"k.pem\"\n".to_owned(),
            "server.tls.cert_file",
        ),
        (
            "[admin.tls]\ncert_file = \"c.pem\"\nkey_file = \"\"\n".to_owned(),
            "admin.tls.key_file",
        ),
    ];
    for (toml, key) in cases {
        let err = Config::from_toml_str(&toml).unwrap_err();
        assert!(
            err.to_string().contains(&format!("`{key}`")),
            "expected the error for {toml:?} to name `{key}`, got: {err}"
        );
    }
    let err = Config::from_toml_str(&entry("role = \"root\"\n")).unwrap_err();
    assert!(err.to_string().contains("role"), "{err}");
}

#[test]
fn a_missing_or_bad_tokens_file_is_named() {
    let config =
        Config::from_toml_str("[admin]\ntokens_file = \"/nonexistent/tokens.toml\"\n").unwrap();
    let err = config.admin.all_tokens().unwrap_err().to_string();
    assert!(
        err.contains("admin.tokens_file") && err.contains("/nonexistent/tokens.toml"),
        "{err}"
    );

    let tokens = write("[[tokens]]\nname = \"x\"\nrole = \"admin\"\nsha256 = \"00\"\n");
    let config = Config::from_toml_str(&format!(
        "[admin]\ntokens_file = \"{}\"\n",
        tokens.path().display()
    ))
    .unwrap();
    let err = config.admin.all_tokens().unwrap_err().to_string();
    assert!(err.contains("tokens[0].sha256"), "{err}");
    assert!(err.contains(&tokens.path().display().to_string()), "{err}");

    let tokens = write("[[tokens]]\nname = \"x\"\nrole = \"admin\"\nsha = \"00\"\n");
    let config = Config::from_toml_str(&format!(
        "[admin]\ntokens_file = \"{}\"\n",
        tokens.path().display()
    ))
    .unwrap();
    let err = config.admin.all_tokens().unwrap_err().to_string();
    assert!(err.contains("sha"), "{err}");
    assert!(err.contains(&tokens.path().display().to_string()), "{err}");
}

#[test]
fn a_reload_names_the_sections_that_need_a_restart() {
    let old = Config::from_toml_str("[upstream]\nurl = \"http://127.0.0.1:7000\"\n").unwrap();
    let mut new = old.clone();
    new.admin.metrics_token_required = true;
    new.admin.tokens_file = Some("/run/secrets/tokens.toml".into());
    assert!(old.sections_needing_restart(&new).is_empty());
    let moved = Config::from_toml_str(
        "[upstream]\nurl = \"http://127.0.0.1:7001\"\n[[routes]]\nname = \"r\"\npath_prefix = \"/r\"\n",
    )
    .unwrap();
    assert_eq!(old.sections_needing_restart(&moved), ["upstream", "routes"]);
}
