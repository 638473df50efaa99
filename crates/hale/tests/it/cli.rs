use std::process::Command;

fn hale() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_hale"));
    c.env_remove("HALE_LISTEN").env_remove("HALE_DATA_DIR").env_remove("HALE_CONFIG");
    c
}

#[test]
fn version_and_help() {
    let out = hale().arg("--version").output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("hale "));
    let out = hale().arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("serve") && help.contains("config"), "{help}");
}

#[test]
fn migrate_creates_the_sqlite_store() {
    let dir = tempfile::tempdir().unwrap();
    let out = hale().args(["migrate", "--data-dir"]).arg(dir.path()).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(dir.path().join("hale.db").is_file());
}

#[test]
fn config_shows_the_layers() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("hale.toml"), "listen = \"127.0.0.1:9999\"\ndata_dir = \"/file\"\n").unwrap();
    let out = hale()
        .current_dir(dir.path())
        .arg("config")
        .env("HALE_DATA_DIR", "/env")
        .env("HALE_DATABASE_URL", "sqlite:/env/x.db")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("listen = \"127.0.0.1:9999\""), "{text}");
    assert!(text.contains("data_dir = \"/env\""), "{text}");
    let out = hale()
        .current_dir(dir.path())
        .args(["config", "--data-dir", "/flag"])
        .env("HALE_DATA_DIR", "/env")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("data_dir = \"/flag\""));
}

#[test]
fn bad_configuration_is_one_line_and_non_zero() {
    let dir = tempfile::tempdir().unwrap();
    let out = hale().current_dir(dir.path()).args(["config", "--listen", "nowhere"]).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("listen"), "{err}");
    let out = hale().current_dir(dir.path()).args(["--config", "missing.toml", "config"]).output().unwrap();
    assert!(!out.status.success());
    let out =
        hale().current_dir(dir.path()).args(["serve", "--database", "postgres://u:secret@h/db"]).output().unwrap();
    assert!(!out.status.success());
    assert!(!String::from_utf8_lossy(&out.stderr).contains("secret"));
}
