//! `postee healthcheck`: asks a running postee's `/healthz` whether it is healthy. Meant for
//! container health checks (`HEALTHCHECK` in the Dockerfile): the image has no shell, curl
//! or wget, so the binary probes itself.

use std::time::Duration;

use crate::cli::{DEFAULT_HTTP, HealthcheckArgs, env_override};

/// How much of an unhealthy answer's body is printed.
const BODY_SHOWN: usize = 512;

/// Probes the URL; 0 when it answers 200, else 1 (the reason on standard error).
pub async fn run(args: HealthcheckArgs) -> i32 {
    let url = args.url.unwrap_or_else(|| {
        default_url(&env_override(DEFAULT_HTTP, "AQUAALERT_URL", "POSTEE_HTTP"))
    });
    match probe(&url, Duration::from_secs(args.timeout.max(1))).await {
        Ok(body) => {
            println!("healthy: {url}: 200 {body}");
            0
        }
        Err(why) => {
            eprintln!("unhealthy: {url}: {why}");
            1
        }
    }
}

/// `http://<host>:<port>/healthz` for a listen address (`host:port` or `:port`); a wildcard
/// host becomes loopback, since the probe runs next to the server.
pub fn default_url(listen: &str) -> String {
    let listen = listen.trim();
    let (host, port) = match listen.rsplit_once(':') {
        Some((h, p)) if !p.is_empty() => (h, p),
        _ => (listen, "8082"),
    };
    let host = match host {
        "" | "0.0.0.0" | "*" => "127.0.0.1",
        "::" | "[::]" => "[::1]",
        h => h,
    };
    format!("http://{host}:{port}/healthz")
}

async fn probe(url: &str, timeout: Duration) -> Result<String, String> {
    let client = reqwest::Client::builder()
        .timeout(timeout)
        // A proxy from the environment must not stand between the probe and the server.
        .no_proxy()
        .build()
        .map_err(|e| format!("cannot build an HTTP client: {e}"))?;
    let resp = client
        .get(url)
        .send()
        .await
        .map_err(|e| format!("no answer: {}", crate::actions::classify_transport(&e)))?;
    let status = resp.status();
    let body = crate::actions::body_snippet(resp, BODY_SHOWN).await;
    if status == reqwest::StatusCode::OK {
        Ok(body)
    } else {
        Err(format!("{status} {body}"))
    }
}

#[cfg(test)]
mod tests {
    use super::default_url;

    #[test]
    fn the_default_url_is_healthz_on_the_listen_address_with_loopback_for_a_wildcard() {
        assert_eq!(default_url("0.0.0.0:8082"), "http://127.0.0.1:8082/healthz");
        assert_eq!(default_url(":9000"), "http://127.0.0.1:9000/healthz");
        assert_eq!(default_url("[::]:8082"), "http://[::1]:8082/healthz");
        assert_eq!(default_url("10.0.0.5:81"), "http://10.0.0.5:81/healthz");
        assert_eq!(
            default_url("localhost:8082"),
            "http://localhost:8082/healthz"
        );
        assert_eq!(default_url("127.0.0.1"), "http://127.0.0.1:8082/healthz");
    }
}
