//! What start-up reads besides the config file, checked the way start-up reads it, so
//! that `sidelight config check` and a reload refuse what a restart would refuse. Lives
//! here, not in the config crate, because it reads files and builds TLS acceptors.

use crate::config::{Config, ConfigError};

/// Checks the wording (`narration.dir` and every route's sentences), `admin.tokens_file`,
/// and the TLS certificates and keys of both listeners. Reads files.
pub fn check_files(config: &Config) -> Result<(), ConfigError> {
    sidelight_data::narration::prepare(config, Vec::new())?;
    config.admin.all_tokens()?;
    for (key, tls) in [
        ("server.tls", &config.server.tls),
        ("admin.tls", &config.admin.tls),
    ] {
        if let Some(tls) = tls {
            sidelight_data::tls::server_config(tls, key, &[])?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unreadable_certificates_name_their_key() {
        let garbage = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(garbage.path(), "not a certificate\n").unwrap();
        let config = Config::from_toml_str(&format!(
            "[server.tls]\ncert_file = \"{}\"\nkey_file = \"/nonexistent/key.pem\"\n",
            garbage.path().display()
        ))
        .unwrap();
        let err = check_files(&config).unwrap_err().to_string();
        assert!(err.contains("`server.tls.cert_file`"), "{err}");
        let config = Config::from_toml_str(
            "[admin.tls]\ncert_file = \"/nonexistent/cert.pem\"\nkey_file = \"/nonexistent/key.pem\"\n",
        )
        .unwrap();
        let err = check_files(&config).unwrap_err().to_string();
        assert!(
            err.contains("`admin.tls.cert_file`") && err.contains("/nonexistent/cert.pem"),
            "{err}"
        );
    }
}
