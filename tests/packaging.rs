//! `Dockerfile` and `docker-compose.yml` read, for what a run cannot see or
//! where no Docker engine runs: the files they name exist, the environment
//! the image and compose set (all of it, `CAPI_CDC_CONFIG` included) is a
//! valid configuration, the ports and names line up, and the commands they
//! run exist. `deploy/docker/test.sh` runs the stack for real.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(name: &str) -> String {
    std::fs::read_to_string(root().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// Top-level services of the compose file, each with its indented block.
fn services(compose: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut in_services = false;
    let mut current: Option<String> = None;
    for line in compose.lines() {
        if !line.starts_with(' ') && !line.is_empty() && !line.starts_with('#') {
            in_services = line.trim_end() == "services:";
            current = None;
            continue;
        }
        if !in_services {
            continue;
        }
        if let Some(name) = line.strip_prefix("  ").and_then(|l| l.strip_suffix(':')) {
            if !name.starts_with(' ') {
                current = Some(name.to_owned());
                out.insert(name.to_owned(), String::new());
                continue;
            }
        }
        if let Some(name) = &current {
            let block = out.get_mut(name).unwrap();
            block.push_str(line);
            block.push('\n');
        }
    }
    out
}

/// `KEY: value` pairs of a service's `environment:` map.
fn environment(block: &str) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    let mut inside = false;
    for line in block.lines() {
        let trimmed = line.trim();
        if trimmed == "environment:" {
            inside = true;
            continue;
        }
        if inside {
            if !line.starts_with("      ") {
                inside = false;
                continue;
            }
            let (k, v) = trimmed.split_once(':').unwrap();
            env.insert(k.trim().to_owned(), v.trim().trim_matches('"').to_owned());
        }
    }
    env
}

/// `KEY=value` pairs of the Dockerfile's `ENV` instructions (with `\` continuations).
fn dockerfile_env(dockerfile: &str) -> BTreeMap<String, String> {
    let joined = dockerfile.replace("\\\n", " ");
    let mut env = BTreeMap::new();
    for line in joined.lines().filter_map(|l| l.strip_prefix("ENV ")) {
        for pair in line.split_whitespace() {
            let (k, v) = pair.split_once('=').expect("ENV KEY=value");
            env.insert(k.to_owned(), v.to_owned());
        }
    }
    env
}

#[test]
#[allow(clippy::result_large_err)] // figment's Jail API fixes the error type
fn compose_services_files_and_configuration_line_up() {
    let compose = read("docker-compose.yml");
    let services = services(&compose);
    assert_eq!(
        services.keys().map(String::as_str).collect::<Vec<_>>(),
        ["capi-cdc", "postgres", "sandbox", "storefront"]
    );

    // Every host file mounted into a container exists.
    for line in compose.lines() {
        if let Some(mount) = line.trim().strip_prefix("- ./") {
            let host = mount.split(':').next().unwrap();
            assert!(
                root().join(host).exists(),
                "compose mounts ./{host}, which does not exist"
            );
        }
    }

    // PostgreSQL is started with logical decoding.
    assert!(services["postgres"].contains("wal_level=logical"));
    assert!(services["postgres"].contains("sql/schema.sql"));

    // The connector's environment plus its mounted config file is a valid
    // configuration (unknown keys are rejected by the loader).
    let env = environment(&services["capi-cdc"]);
    let config_file = root().join("config/docker.toml");
    assert!(services["capi-cdc"].contains("./config/docker.toml:/etc/capi-cdc/capi-cdc.toml"));
    assert_eq!(env["CAPI_CDC_CONFIG"], "/etc/capi-cdc/capi-cdc.toml");
    // The image's own ENV first, then compose's on top, as Docker does.
    let mut checked: BTreeMap<String, String> = dockerfile_env(&read("Dockerfile"));
    checked.extend(env.clone());
    assert!(checked.contains_key("CAPI_CDC_CONFIG"));
    figment::Jail::expect_with(move |jail| {
        for (k, v) in &checked {
            jail.set_env(k, v);
        }
        let config = capi_cdc::config::Config::load(&config_file).map_err(|e| e.to_string())?;
        let google = config
            .google
            .as_ref()
            .ok_or("compose enables no Google destination")?;
        assert_eq!(google.data_manager_url.as_str(), "http://sandbox:9188/");
        assert!(
            google.developer_token.is_some(),
            "provision needs a developer token"
        );
        let meta = config
            .meta
            .as_ref()
            .ok_or("compose enables no Meta destination")?;
        assert_eq!(meta.base_url.as_str(), "http://sandbox:9188/");
        assert_eq!(config.admin.listen.port(), 9187);
        assert_eq!(config.source.pg.get_dbname(), Some("shop"));
        Ok(())
    });

    // The sandbox accepts what the connector sends.
    let sandbox = &services["sandbox"];
    assert!(sandbox.contains("\"--listen\", \"0.0.0.0:9188\""));
    assert!(sandbox.contains(&format!(
        "\"--meta-pixel-id\", \"{}\"",
        env["CAPI_CDC_DESTINATIONS__META__PIXEL_ID"]
    )));
    assert_eq!(
        environment(sandbox)["CAPI_CDC_SANDBOX_META_TOKEN"],
        env["CAPI_CDC_DESTINATIONS__META__ACCESS_TOKEN"]
    );
    // The database the connector reads is the one compose creates.
    let pg_env = environment(&services["postgres"]);
    let url = &env["CAPI_CDC_SOURCE__URL"];
    assert!(url.contains(&format!(
        "{}:{}@postgres:5432/{}",
        pg_env["POSTGRES_USER"], pg_env["POSTGRES_PASSWORD"], pg_env["POSTGRES_DB"]
    )));
}

#[test]
fn dockerfile_copies_existing_files_and_exposes_the_admin_port() {
    let dockerfile = read("Dockerfile");
    for line in dockerfile
        .lines()
        .filter(|l| l.starts_with("COPY ") && !l.contains("--from"))
    {
        let parts: Vec<&str> = line.split_whitespace().collect();
        for source in &parts[1..parts.len() - 1] {
            if source.starts_with("target/") {
                continue; // the `prebuilt` stage's binary, built by deploy/docker/test.sh
            }
            assert!(
                root().join(source).exists(),
                "Dockerfile copies {source}, which does not exist"
            );
        }
    }
    assert!(dockerfile.contains("--bin capi-cdc"));
    // The build stage compiles jemalloc with the repository's settings.
    assert!(dockerfile.contains("COPY .cargo ./.cargo\n"));
    assert!(read(".cargo/config.toml").contains("JEMALLOC_SYS_WITH_MALLOC_CONF"));
    // Both ways of getting the binary put it where the runtime stage takes it
    // from: the build stage's `cargo build --release` in WORKDIR /src, and
    // the prebuilt stage's copy of the host's build of the same command.
    assert!(dockerfile.contains("WORKDIR /src\n"));
    assert!(dockerfile.contains("RUN cargo build --release --locked --bin capi-cdc\n"));
    assert!(dockerfile.contains("COPY target/release/capi-cdc /src/target/release/capi-cdc\n"));
    assert!(dockerfile
        .contains("COPY --from=binary /src/target/release/capi-cdc /usr/local/bin/capi-cdc\n"));
    assert!(dockerfile.contains("USER capi\n"));
    assert!(dockerfile.contains("HEALTHCHECK "));
    assert!(dockerfile.contains("/healthz"));
    // .dockerignore lets through exactly what the Dockerfile copies.
    let ignore = read(".dockerignore");
    for kept in [
        "Cargo.toml",
        "Cargo.lock",
        ".cargo",
        "src",
        "sql",
        "config",
        "target/release/capi-cdc",
    ] {
        assert!(
            ignore.contains(&format!("!{kept}\n")),
            ".dockerignore drops {kept}"
        );
    }
    assert!(dockerfile.contains("EXPOSE 9187"));
    assert!(dockerfile.contains("CAPI_CDC_ADMIN__LISTEN=0.0.0.0:9187"));
    assert!(dockerfile.contains("ENTRYPOINT [\"/usr/local/bin/capi-cdc\"]"));
    assert!(
        root().join("Cargo.lock").exists(),
        "--locked needs Cargo.lock"
    );
}

#[test]
fn the_commands_and_flags_the_files_use_exist() {
    let bin = env!("CARGO_BIN_EXE_capi-cdc");
    let help = |args: &[&str]| {
        let out = std::process::Command::new(bin)
            .args(args)
            .arg("--help")
            .output()
            .unwrap();
        assert!(out.status.success());
        String::from_utf8(out.stdout).unwrap()
    };
    let sandbox = help(&["sandbox"]);
    for flag in ["--listen", "--meta-pixel-id", "CAPI_CDC_SANDBOX_META_TOKEN"] {
        assert!(sandbox.contains(flag), "sandbox --help lacks {flag}");
    }
    assert!(sandbox.contains("--seed-google-actions"));
    let storefront = help(&["storefront"]);
    for flag in ["--url", "--rate", "--heartbeat-file"] {
        assert!(storefront.contains(flag), "storefront --help lacks {flag}");
    }
    let top = help(&[]);
    for command in [
        "run",
        "setup",
        "provision",
        "check",
        "tail",
        "sandbox",
        "storefront",
    ] {
        assert!(top.contains(command), "capi-cdc --help lacks {command}");
    }
    assert!(top.contains("CAPI_CDC_CONFIG"));
    // The example config in the image is a valid configuration once the
    // URL and token it leaves as placeholders are real.
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/capi-cdc.example.toml");
    capi_cdc::config::Config::load(&example).expect("config/capi-cdc.example.toml is valid");
}
