//! Commands that talk to a running server through its admin API.

use anyhow::{Context, bail};
use futures_util::StreamExt;
use serde_json::{Value, json};

#[derive(clap::Args, Clone)]
pub struct ServerArgs {
    /// Base URL of the running server.
    #[arg(long, env = "KAIROS_URL", default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// Admin token (printed by `kairos serve`).
    #[arg(long, env = "KAIROS_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
}

#[derive(clap::Subcommand)]
pub enum SourcesAction {
    /// Create a source; prints its id and write key.
    Create { name: String },
    /// List sources with their write keys.
    List,
    /// Issue a new write key; the old one keeps working for --grace-seconds.
    Rotate {
        id: String,
        #[arg(long, default_value_t = 0)]
        grace_seconds: u32,
    },
}

impl ServerArgs {
    fn token(&self) -> anyhow::Result<&str> {
        self.admin_token
            .as_deref()
            .context("the admin token is needed: pass --admin-token or set KAIROS_ADMIN_TOKEN (kairos serve prints it)")
    }

    pub fn endpoint(&self, path: &str) -> String {
        format!("{}{path}", self.url.trim_end_matches('/'))
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

/// Turns a non-2xx answer into an error carrying the server's explanation.
pub async fn checked(response: reqwest::Response) -> anyhow::Result<Value> {
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        let detail = body
            .get("detail")
            .and_then(Value::as_str)
            .unwrap_or("no detail");
        bail!("the server answered {status}: {detail}");
    }
    Ok(body)
}

pub fn sources(server: &ServerArgs, action: SourcesAction) -> anyhow::Result<()> {
    let token = server.token()?.to_string();
    runtime()?.block_on(async move {
        let client = reqwest::Client::new();
        let request = match &action {
            SourcesAction::Create { name } => client
                .post(server.endpoint("/v1/admin/sources"))
                .json(&json!({"name": name})),
            SourcesAction::List => client.get(server.endpoint("/v1/admin/sources")),
            SourcesAction::Rotate { id, grace_seconds } => client
                .post(server.endpoint(&format!("/v1/admin/sources/{id}/rotate")))
                .json(&json!({"grace_seconds": grace_seconds})),
        };
        let response = request
            .bearer_auth(&token)
            .send()
            .await
            .with_context(|| format!("connecting to {}", server.url))?;
        let body = checked(response).await?;
        match action {
            SourcesAction::List => {
                println!("{:<22} {:<20} {:<36} created", "id", "name", "write key");
                for source in body["sources"].as_array().into_iter().flatten() {
                    println!(
                        "{:<22} {:<20} {:<36} {}",
                        text(&source["id"]),
                        text(&source["name"]),
                        text(&source["write_key"]),
                        text(&source["created_at"])
                    );
                }
            }
            _ => println!("{}", serde_json::to_string_pretty(&body)?),
        }
        Ok(())
    })
}

/// `kairos evaluate-offer`: the server's off-policy estimates, a line per
/// estimator (for scripts), what they rest on to stderr.
pub fn evaluate_offer(server: &ServerArgs, offer: &str, uplift_score: &str) -> anyhow::Result<()> {
    let token = server.token()?.to_string();
    let path = format!("/v1/offers/{}/evaluate", encode_path(offer));
    let report = runtime()?.block_on(async move {
        let response = reqwest::Client::new()
            .post(server.endpoint(&path))
            .bearer_auth(&token)
            .json(&json!({"uplift_score": uplift_score}))
            .send()
            .await
            .with_context(|| format!("connecting to {}", server.url))?;
        checked(response).await
    })?;
    let policy = &report["policy"];
    eprintln!(
        "{} decisions; the policy gives the incentive to {:.1}% of them",
        report["decisions"].as_u64().unwrap_or(0),
        policy["give_rate"].as_f64().unwrap_or(0.0) * 100.0
    );
    let estimates = policy["estimates"].as_object().cloned().unwrap_or_default();
    for (name, estimate) in estimates {
        let value = |key: &str, of: &Value| of[key].as_f64().unwrap_or(f64::NAN);
        let others =
            |group: &str| value("net_value_per_decision", &report[group]["estimates"][&name]);
        println!(
            "estimator={name} policy={:.6} low={:.6} high={:.6} give_to_all={:.6} give_to_none={:.6} give_rate={:.4}",
            value("net_value_per_decision", &estimate),
            estimate["net_value_interval"][0]
                .as_f64()
                .unwrap_or(f64::NAN),
            estimate["net_value_interval"][1]
                .as_f64()
                .unwrap_or(f64::NAN),
            others("give_to_all"),
            others("give_to_none"),
            value("give_rate", policy),
        );
    }
    Ok(())
}

/// A path segment with what URLs reserve escaped (offer names hold spaces).
fn encode_path(segment: &str) -> String {
    segment
        .bytes()
        .map(|byte| match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (byte as char).to_string()
            }
            _ => format!("%{byte:02X}"),
        })
        .collect()
}

fn text(value: &Value) -> &str {
    value.as_str().unwrap_or("")
}

/// Streams `/v1/admin/tail` (Server-Sent Events) to stdout, one JSON per line.
pub fn tail(server: &ServerArgs, source: Option<&str>) -> anyhow::Result<()> {
    let token = server.token()?.to_string();
    let mut url = server.endpoint("/v1/admin/tail");
    if let Some(source) = source {
        url.push_str(&format!("?source={source}"));
    }
    runtime()?.block_on(async move {
        let response = reqwest::Client::new()
            .get(&url)
            .bearer_auth(&token)
            .send()
            .await
            .with_context(|| format!("connecting to {}", server.url))?;
        if !response.status().is_success() {
            checked(response).await?;
            return Ok(());
        }
        eprintln!("tailing {url} (Ctrl-C to stop)");
        let mut body = response.bytes_stream();
        let mut pending = String::new();
        while let Some(chunk) = body.next().await {
            pending.push_str(&String::from_utf8_lossy(&chunk?));
            while let Some(end) = pending.find('\n') {
                let line: String = pending.drain(..=end).collect();
                if let Some(data) = line.trim_end().strip_prefix("data:") {
                    println!("{}", data.trim_start());
                }
            }
        }
        Ok(())
    })
}
