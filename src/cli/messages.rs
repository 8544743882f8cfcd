//! `flowgate messages list|show|lanes|replay|skip|unblock`: the log history from a terminal, through
//! a running server's admin API (`/_admin/api`), so that a replay is queued by the
//! server that runs it, whichever store it has.

use std::process::ExitCode;

use serde_json::Value;

/// Where the admin API is and the token that opens it.
#[derive(Debug, Clone)]
pub struct Admin {
    pub url: String,
    pub token: String,
}

/// The filters of `messages list`, as the admin API names them: serialized, the
/// query string of `GET /messages` (what is not set is left out).
#[derive(Debug, Default, Clone, clap::Args, serde::Serialize)]
pub struct ListFilter {
    #[arg(long)]
    pub tenant: Option<String>,
    #[arg(long)]
    pub trigger: Option<String>,
    /// queued, running, retrying, succeeded, failed, dead, skipped, rejected or cancelled.
    #[arg(long)]
    pub status: Option<String>,
    #[arg(long)]
    pub lane: Option<String>,
    /// Sent by this consumer: an API key's label, or the HTTP Basic user.
    #[arg(long)]
    pub consumer: Option<String>,
    /// Sent with the key of this id (keys of the form `fg_<id>_<secret>`).
    #[arg(long)]
    pub key_id: Option<String>,
    /// Received at or after (RFC 3339).
    #[arg(long)]
    pub from: Option<String>,
    /// Received before (RFC 3339).
    #[arg(long)]
    pub to: Option<String>,
    /// Where the page starts (the `next page` of the one before).
    #[arg(long)]
    pub cursor: Option<String>,
    #[arg(long)]
    pub limit: Option<u32>,
}

/// Why the admin API gave no answer, or refused.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("cannot reach flowgate at {url}: {error}")]
    Unreachable {
        url: String,
        #[source]
        error: reqwest::Error,
    },
    #[error("flowgate at {url} answered {status} without JSON: {error}")]
    NotJson {
        url: String,
        status: reqwest::StatusCode,
        #[source]
        error: reqwest::Error,
    },
    /// The server's status and the messages of its `errors`.
    #[error("{status}: {}", messages.join("; "))]
    Refused {
        status: reqwest::StatusCode,
        messages: Vec<String>,
    },
    /// No HTTP client could be built.
    #[error("{0}")]
    Client(#[source] reqwest::Error),
    #[error("{0}")]
    Query(#[from] serde_urlencoded::ser::Error),
}

impl Admin {
    fn endpoint(&self, path: &str) -> String {
        format!("{}/_admin/api{path}", self.url.trim_end_matches('/'))
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> Result<Value, AdminError> {
        let res =
            req.bearer_auth(&self.token)
                .send()
                .await
                .map_err(|error| AdminError::Unreachable {
                    url: self.url.clone(),
                    error,
                })?;
        let status = res.status();
        let body: Value = res.json().await.map_err(|error| AdminError::NotJson {
            url: self.url.clone(),
            status,
            error,
        })?;
        if status.is_success() {
            return Ok(body);
        }
        let messages: Vec<String> = body["errors"]
            .as_array()
            .map(|es| {
                es.iter()
                    .filter_map(|e| e["message"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        Err(AdminError::Refused { status, messages })
    }

    fn client() -> Result<reqwest::Client, AdminError> {
        reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(30))
            .build()
            .map_err(AdminError::Client)
    }

    /// One page of the log history, newest first, and the cursor of the next.
    pub async fn list(&self, f: &ListFilter) -> Result<Value, AdminError> {
        self.get("/messages", f).await
    }

    /// The ordered lanes held by a failed message, of one tenant (and trigger) or all.
    pub async fn lanes(
        &self,
        tenant: Option<&str>,
        trigger: Option<&str>,
    ) -> Result<Value, AdminError> {
        let given: Vec<(&str, &str)> = [("tenant", tenant), ("trigger", trigger)]
            .into_iter()
            .filter_map(|(k, v)| v.map(|v| (k, v)))
            .collect();
        self.get("/lanes", &given).await
    }

    /// GET `path` with `query` (pairs, or a struct of the parameters that have a value).
    async fn get(&self, path: &str, query: &impl serde::Serialize) -> Result<Value, AdminError> {
        let query = serde_urlencoded::to_string(query)?;
        let mut url = self.endpoint(path);
        if !query.is_empty() {
            url.push('?');
            url.push_str(&query);
        }
        self.send(Self::client()?.get(url)).await
    }

    /// One message: input, trace, response and every attempt.
    pub async fn show(&self, id: &str) -> Result<Value, AdminError> {
        self.send(Self::client()?.get(self.endpoint(&format!("/messages/{id}"))))
            .await
    }

    /// Acts on a message: `replay` queues it again as a new message, `skip` and
    /// `unblock` let go of the ordered lane it holds. Returns the server's answer.
    pub async fn act(&self, id: &str, action: &str) -> Result<Value, AdminError> {
        let url = self.endpoint(&format!("/messages/{id}/{action}"));
        self.send(Self::client()?.post(url)).await
    }
}

/// A cell of a table: text as is, nothing as `-`.
fn cell(v: &Value) -> String {
    match v {
        Value::Null => "-".to_owned(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Rows under their headings, each column as wide as its widest cell.
fn columns<const N: usize>(rows: &[[String; N]]) -> String {
    let widths: Vec<usize> = (0..N)
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for r in rows {
        let line: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// Who sent a message: its consumer's label, with the key id after a `/`
/// when it has one (`webshop/k3q7x2ab`); `-` for nobody.
fn consumer_cell(m: &Value) -> String {
    match (m["consumer"].as_str(), m["key_id"].as_str()) {
        (Some(label), Some(id)) => format!("{label}/{id}"),
        (Some(label), None) => label.to_owned(),
        _ => "-".to_owned(),
    }
}

/// A page of the log history as a table, one message a line, and where the next
/// page starts.
pub fn table(page: &Value) -> String {
    let mut rows = vec![
        [
            "MESSAGE", "TRIGGER", "CONSUMER", "LANE", "STATUS", "ATTEMPTS", "RESPONSE", "RECEIVED",
        ]
        .map(str::to_owned),
    ];
    for m in page["messages"].as_array().into_iter().flatten() {
        rows.push([
            cell(&m["message_id"]),
            format!("{}/{}", cell(&m["tenant"]), cell(&m["trigger"])),
            consumer_cell(m),
            cell(&m["lane"]),
            cell(&m["status"]),
            cell(&m["attempts"]),
            cell(&m["response_status"]),
            cell(&m["received_at"]),
        ]);
    }
    let mut out = columns(&rows);
    match page["next_cursor"].as_str() {
        Some(c) => out.push_str(&format!("next page: --cursor {c}\n")),
        None => out.push_str("(end)\n"),
    }
    out
}

/// The blocked lanes as a table, one lane a line, with what lets each go on.
pub fn lane_table(list: &Value) -> String {
    let lanes = list["lanes"].as_array().map(Vec::as_slice).unwrap_or(&[]);
    if lanes.is_empty() {
        return "no blocked lanes\n".to_owned();
    }
    let mut rows = vec![["TRIGGER", "LANE", "BLOCKED BY", "STATUS", "SINCE"].map(str::to_owned)];
    for l in lanes {
        rows.push([
            format!("{}/{}", cell(&l["tenant"]), cell(&l["trigger"])),
            cell(&l["lane"]),
            cell(&l["message_id"]),
            cell(&l["status"]),
            cell(&l["since"]),
        ]);
    }
    let mut out = columns(&rows);
    out.push_str("(`flowgate messages skip|unblock <BLOCKED BY>` lets a lane go on)\n");
    out
}

// `flowgate messages ...` (a plain comment: a doc comment would become its help).
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// One page of the log history, newest first.
    List {
        #[command(flatten)]
        filter: ListFilter,
        /// Print the admin API's JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// One message: input, trace, response and every attempt (JSON).
    Show { id: String },
    /// The ordered lanes blocked by a failed message, and the message that holds each.
    Lanes {
        #[arg(long)]
        tenant: Option<String>,
        /// Trigger name (needs --tenant).
        #[arg(long, requires = "tenant")]
        trigger: Option<String>,
        /// Print the admin API's JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Queue a message again, as a new message linked to it.
    Replay { id: String },
    /// Mark the message that blocks its ordered lane skipped; the lane goes on.
    Skip { id: String },
    /// Let the lane a message blocks go on; the message keeps its status.
    Unblock { id: String },
}

/// Runs one `messages` subcommand against the admin API at `url`.
pub fn run(command: Command, url: String, token: Option<String>) -> anyhow::Result<ExitCode> {
    let Some(token) = token else {
        anyhow::bail!("an admin token is needed: --token or FLOWGATE_ADMIN_TOKEN");
    };
    let admin = Admin { url, token };
    let runtime = super::current_thread()?;
    let pretty = |v: serde_json::Value| format!("{v:#}\n");
    let answer = runtime.block_on(async {
        match command {
            Command::List { filter, json } => {
                let page = admin.list(&filter).await?;
                Ok(if json { pretty(page) } else { table(&page) })
            }
            Command::Show { id } => admin.show(&id).await.map(pretty),
            Command::Lanes {
                tenant,
                trigger,
                json,
            } => {
                let list = admin.lanes(tenant.as_deref(), trigger.as_deref()).await?;
                Ok(if json {
                    pretty(list)
                } else {
                    lane_table(&list)
                })
            }
            Command::Replay { id } => admin.act(&id, "replay").await.map(|r| {
                format!(
                    "replayed {} as {}\n",
                    r["replay_of"].as_str().unwrap_or(&id),
                    r["message_id"].as_str().unwrap_or("?")
                )
            }),
            Command::Skip { id } => admin
                .act(&id, "skip")
                .await
                .map(|r| format!("skipped {id}; lane {} goes on\n", r["lane"])),
            Command::Unblock { id } => admin
                .act(&id, "unblock")
                .await
                .map(|r| format!("unblocked lane {} held by {id}\n", r["lane"])),
        }
    });
    match answer {
        Ok(text) => {
            print!("{text}");
            Ok(ExitCode::SUCCESS)
        }
        Err(why) => {
            // Each cause once: reqwest keeps what went wrong ("Connection refused") in its source.
            eprintln!("flowgate messages: {}", crate::domain::chain::Chain(&why));
            Ok(ExitCode::FAILURE)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_filter_is_the_query_string_without_what_is_unset() {
        let f = ListFilter {
            tenant: Some("acme".into()),
            lane: Some("c 1".into()),
            consumer: Some("webshop".into()),
            limit: Some(5),
            ..ListFilter::default()
        };
        let query = serde_urlencoded::to_string(&f).unwrap();
        assert_eq!(query, "tenant=acme&lane=c+1&consumer=webshop&limit=5");
        assert_eq!(
            serde_urlencoded::to_string(ListFilter::default()).unwrap(),
            ""
        );
    }

    #[test]
    fn a_page_is_a_table_with_where_the_next_starts() {
        let page = json!({
            "messages": [
                {"message_id": "0190-a", "tenant": "acme", "trigger": "Orders", "lane": null,
                 "status": "succeeded", "attempts": 1, "response_status": 201,
                 "received_at": "2026-12-01T10:00:00.000000Z", "consumer": "webshop",
                 "key_id": "k3q7x2ab"},
                {"message_id": "0190-b", "tenant": "acme", "trigger": "Lanes", "lane": "c-1",
                 "status": "failed", "attempts": 3, "response_status": null,
                 "received_at": "2026-12-01T09:00:00.000000Z", "consumer": null, "key_id": null}
            ],
            "next_cursor": "0190-b"
        });
        assert_eq!(
            table(&page),
            "MESSAGE  TRIGGER      CONSUMER          LANE  STATUS     ATTEMPTS  RESPONSE  RECEIVED\n\
             0190-a   acme/Orders  webshop/k3q7x2ab  -     succeeded  1         201       2026-12-01T10:00:00.000000Z\n\
             0190-b   acme/Lanes   -                 c-1   failed     3         -         2026-12-01T09:00:00.000000Z\n\
             next page: --cursor 0190-b\n"
        );
        let last = json!({"messages": [], "next_cursor": null});
        assert_eq!(
            lane_table(&json!({"lanes": [
                {"tenant": "acme", "trigger": "Lanes", "lane": "c-300", "message_id": "0190-b",
                 "status": "dead", "since": "2026-12-01T09:00:01.000000Z"}
            ]})),
            "TRIGGER     LANE   BLOCKED BY  STATUS  SINCE\n\
             acme/Lanes  c-300  0190-b      dead    2026-12-01T09:00:01.000000Z\n\
             (`flowgate messages skip|unblock <BLOCKED BY>` lets a lane go on)\n"
        );
        assert_eq!(lane_table(&json!({"lanes": []})), "no blocked lanes\n");
        assert_eq!(
            table(&last),
            "MESSAGE  TRIGGER  CONSUMER  LANE  STATUS  ATTEMPTS  RESPONSE  RECEIVED\n(end)\n"
        );
    }
}
