#![no_main]
//! The config parser on arbitrary text: it never panics, and a config it accepts
//! survives serialisation (what `config check` and the admin API show) and reads back as
//! the same config.

use libfuzzer_sys::fuzz_target;
use sidelight_config::Config;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(config) = Config::from_toml_str(text) else {
        return;
    };
    let dumped = match toml::to_string(&config) {
        Ok(d) => d,
        Err(e) => panic!("an accepted config does not serialise: {e}"),
    };
    match Config::from_toml_str(&dumped) {
        Ok(again) => assert_eq!(again, config, "the config changes through TOML:\n{dumped}"),
        Err(e) => panic!("a serialised config is refused: {e}\n{dumped}"),
    }
});
