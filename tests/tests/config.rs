//! Configuration errors stop the binary before it serves, and name what is wrong.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

use sidelight_e2e::sidelight_bin;

fn run(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String, String) {
    let mut command = Command::new(sidelight_bin());
    command.args(args).env_remove("RUST_LOG");
    for (k, v) in env {
        command.env(k, v);
    }
    let output = command.output().unwrap();
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn example() -> String {
    format!("{}/../examples/sidelight.toml", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn config_check_accepts_the_annotated_example() {
    let (code, stdout, _) = run(&["config", "check", &example()], &[]);
    assert_eq!(code, Some(0));
    assert!(stdout.contains("ok"), "{stdout}");
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
        let (code, _, stderr) = run(&["config", "check", path.to_str().unwrap()], &[]);
        assert_eq!(code, Some(64), "{toml}: {stderr}");
        assert!(stderr.contains(key), "expected `{key}` in: {stderr}");
    }
}

#[test]
fn serve_refuses_a_bad_environment_override_before_listening() {
    let (code, _, stderr) = run(
        &["serve", "--config", &example()],
        &[("SIDELIGHT_UPSTREAM__POOL_MAX_IDLE", "many")],
    );
    assert_eq!(code, Some(64), "{stderr}");
    assert!(
        stderr.contains("SIDELIGHT_UPSTREAM__POOL_MAX_IDLE"),
        "{stderr}"
    );

    let (code, _, stderr) = run(
        &["serve", "--config", &example()],
        &[("SIDELIGHT_UPSTREAM__URL", "https://model.internal")],
    );
    assert_eq!(code, Some(64), "{stderr}");
    assert!(stderr.contains("upstream.url"), "{stderr}");
}
