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
    let example = include_str!("../../../../examples/sidelight.toml");
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
