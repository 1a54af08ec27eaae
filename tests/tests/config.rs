//! Configuration errors stop the binary before it serves, and name what is wrong.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use sidelight_e2e::{cli, run_cli};

fn example() -> String {
    format!("{}/../examples/sidelight.toml", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn config_check_accepts_the_annotated_example() {
    let run = run_cli(&["config", "check", &example()]);
    assert_eq!(run.code, Some(0));
    assert!(run.stdout.contains("ok"), "{}", run.stdout);
}

#[test]
fn config_check_names_the_bad_key_and_exits_64() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "[upstream]\nrequest_timeout = \"soon\"\n",
            "upstream.request_timeout",
        ),
        ("[server]\nlistn = \"0.0.0.0:80\"\n", "listn"),
        (
            "[[routes]]\nname = \"credit\"\npath_prefix = \"v1\"\n",
            "routes[0].path_prefix",
        ),
    ];
    for (i, (toml, key)) in cases.iter().enumerate() {
        let path = dir.path().join(format!("bad{i}.toml"));
        std::fs::write(&path, toml).unwrap();
        let run = run_cli(&["config", "check", path.to_str().unwrap()]);
        assert_eq!(run.code, Some(64), "{toml}: {}", run.stderr);
        assert!(
            run.stderr.contains(key),
            "expected `{key}` in: {}",
            run.stderr
        );
    }
}

#[test]
fn serve_refuses_a_bad_environment_override_before_listening() {
    let run = cli(["serve", "--config", &example()])
        .env("SIDELIGHT_UPSTREAM__POOL_MAX_IDLE", "many")
        .run();
    assert_eq!(run.code, Some(64), "{}", run.stderr);
    assert!(
        run.stderr.contains("SIDELIGHT_UPSTREAM__POOL_MAX_IDLE"),
        "{}",
        run.stderr
    );

    let run = cli(["serve", "--config", &example()])
        .env("SIDELIGHT_UPSTREAM__URL", "https://model.internal")
        .run();
    assert_eq!(run.code, Some(64), "{}", run.stderr);
    assert!(run.stderr.contains("upstream.url"), "{}", run.stderr);
}

#[test]
fn a_misspelt_key_is_named_as_written_with_a_suggestion() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sidelight.toml");
    std::fs::write(&path, "[server]\nshutdown_grase = \"5s\"\n").unwrap();
    let run = run_cli(&["config", "check", path.to_str().unwrap()]);
    assert_eq!(run.code, Some(64), "{run}");
    assert!(
        run.stderr
            .contains("key `server.shutdown_grase`: unknown key `shutdown_grase`; did you mean `shutdown_grace`?"),
        "{run}"
    );
    assert!(!run.stderr.contains("default."), "{run}");
}

#[test]
fn logs_written_to_a_pipe_carry_no_colour_codes() {
    // A port already taken: `serve` logs the failure (human format, the default) to its
    // stderr, which is a pipe here as it is under systemd or `2> file`.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sidelight.toml");
    std::fs::write(
        &path,
        format!(
            "[server]\nlisten = \"{}\"\nadmin_listen = \"127.0.0.1:0\"\n",
            taken.local_addr().unwrap()
        ),
    )
    .unwrap();
    let run = cli(["serve", "--config", path.to_str().unwrap()])
        .env_remove("NO_COLOR")
        .env_remove("SIDELIGHT_LOG__FORMAT")
        .run();
    assert_eq!(run.code, Some(1), "{run}");
    assert!(run.stderr.contains("ERROR"), "{run}");
    assert!(!run.stderr.contains('\u{1b}'), "{:?}", run.stderr);
}
