//! The cluster's control API (loopback by default) and the two commands that
//! talk to it: `coop cluster status` and `coop cluster restart`.
//!
//! - `GET /status`: instances and workers, their health and load, the desired
//!   counts, the scaler's last decisions (JSON).
//! - `POST /restart`: a rolling restart; answers when it is done.
//! - `GET /metrics`: the supervisor's own Prometheus metrics (scaler decisions,
//!   members by state, reloads).
//!
//! Every route asks for the cluster's token (`Authorization: Bearer`, the
//! token in `control.token`): loopback is not a boundary, since any local
//! process, and any web page a browser on this host opens, can send a POST
//! to 127.0.0.1.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

use coop_runtime::prometheus_handle;

use super::args::ControlArgs;
use super::supervisor::Cluster;

pub async fn serve(
    listener: tokio::net::TcpListener,
    cluster: Arc<Cluster>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let metrics = prometheus_handle();
    let app = Router::new()
        .route("/status", get(status))
        .route("/restart", post(restart))
        .route(
            "/metrics",
            get(move || {
                let metrics = metrics.clone();
                async move {
                    (
                        [(
                            header::CONTENT_TYPE,
                            "text/plain; version=0.0.4; charset=utf-8",
                        )],
                        metrics.render(),
                    )
                }
            }),
        )
        .route_layer(axum::middleware::from_fn_with_state(
            cluster.clone(),
            require_token,
        ))
        .with_state(cluster);
    let result = axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            let _ = stop.wait_for(|stopped| *stopped).await;
        })
        .await;
    if let Err(err) = result {
        tracing::error!(error = %err, "the control API stopped");
    }
}

async fn require_token(
    State(cluster): State<Arc<Cluster>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let sent = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let expected = cluster.token().as_bytes();
    // Compared in constant time: the answer's timing says nothing of the token.
    let matches = sent.is_some_and(|sent| {
        sent.len() == expected.len()
            && sent
                .bytes()
                .zip(expected)
                .fold(0u8, |diff, (a, b)| diff | (a ^ b))
                == 0
    });
    if !matches {
        return (
            StatusCode::UNAUTHORIZED,
            axum::Json(json!({"error": {
                "code": "token_required",
                "message": "send the cluster's token as `Authorization: Bearer <token>`; \
                            it is in control.token in the cluster's folder",
            }})),
        )
            .into_response();
    }
    next.run(req).await
}

async fn status(State(cluster): State<Arc<Cluster>>) -> Response {
    axum::Json(cluster.status()).into_response()
}

async fn restart(State(cluster): State<Arc<Cluster>>) -> Response {
    match cluster.rolling_restart().await {
        Ok(report) => axum::Json(report).into_response(),
        Err(err) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            axum::Json(json!({"error": {
                "code": "restart_failed",
                "message": format!("the rolling restart stopped: {err:#}; the instances \
                                    not yet replaced are still serving"),
            }})),
        )
            .into_response(),
    }
}

fn control_url(args: &ControlArgs, path: &str) -> String {
    format!("http://{}{path}", args.control)
}

fn unreachable(args: &ControlArgs, err: reqwest::Error) -> anyhow::Error {
    anyhow::anyhow!(
        "could not reach a running `coop cluster` at {} (COOP_CLUSTER_CONTROL): {err}",
        args.control
    )
}

/// `coop cluster status`.
pub async fn print_status(args: &ControlArgs) -> anyhow::Result<()> {
    let token = args.token()?;
    let response = reqwest::Client::new()
        .get(control_url(args, "/status"))
        .bearer_auth(&token)
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .map_err(|e| unreachable(args, e))?;
    let ok = response.status().is_success();
    let status: Value = response.json().await.context("reading the status")?;
    if !ok {
        bail!(
            "{}",
            status["error"]["message"]
                .as_str()
                .unwrap_or("the cluster refused the request")
        );
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&status)?);
    } else {
        print!("{}", format_status(&status));
    }
    Ok(())
}

/// `coop cluster restart`.
pub async fn request_restart(args: &ControlArgs) -> anyhow::Result<()> {
    eprintln!("rolling restart: replacing each instance and worker in turn…");
    let token = args.token()?;
    let response = reqwest::Client::new()
        .post(control_url(args, "/restart"))
        .bearer_auth(&token)
        .timeout(Duration::from_secs(3600))
        .send()
        .await
        .map_err(|e| unreachable(args, e))?;
    let ok = response.status().is_success();
    let body: Value = response.json().await.context("reading the answer")?;
    if !ok {
        bail!(
            "{}",
            body["error"]["message"]
                .as_str()
                .unwrap_or("restart failed")
        );
    }
    println!(
        "replaced {} processes in {:.1} s",
        body["replaced"],
        body["seconds"].as_f64().unwrap_or(0.0)
    );
    Ok(())
}

fn format_status(status: &Value) -> String {
    let text = |v: &Value| match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".to_owned(),
        other => other.to_string(),
    };
    let fixed = |v: &Value, scale: f64, digits: usize| {
        v.as_f64().map_or("-".to_owned(), |x| {
            format!("{:.*}", digits, (x * scale).max(0.0))
        })
    };
    let mut out = format!(
        "listening on http://{} (nginx pid {}), auto-scaler {}, desired: {} instances, {} workers\n",
        text(&status["listen"]),
        text(&status["nginx_pid"]),
        if status["autoscale"].as_bool() == Some(true) {
            "on"
        } else {
            "off"
        },
        text(&status["desired"]["instances"]),
        text(&status["desired"]["workers"]),
    );
    for (title, key, last) in [
        ("instances", "instances", "p95 ms"),
        ("workers", "workers", "ready jobs"),
    ] {
        out.push_str(&format!(
            "\n{title}:\n  {:>4}  {:<21} {:>8}  {:<9} {:<8} {:>5} {:>10} {:>9} {:>9}\n",
            "id", "address", "pid", "state", "health", "cpu%", last, "in flight", "uptime s"
        ));
        for m in status[key].as_array().into_iter().flatten() {
            let load = &m["load"];
            let last_value = if key == "instances" {
                fixed(&load["p95_ms"], 1.0, 1)
            } else {
                fixed(&load["ready_jobs"], 1.0, 0)
            };
            out.push_str(&format!(
                "  {:>4}  {:<21} {:>8}  {:<9} {:<8} {:>5} {:>10} {:>9} {:>9}\n",
                text(&m["id"]),
                text(&m["address"]),
                text(&m["pid"]),
                text(&m["state"]),
                if m["healthy"].as_bool() == Some(true) {
                    "ok"
                } else {
                    "failing"
                },
                fixed(&load["cpu"], 100.0, 0),
                last_value,
                fixed(&load["in_flight"], 1.0, 0),
                text(&m["uptime_seconds"]),
            ));
        }
    }
    let decisions = status["decisions"].as_array().cloned().unwrap_or_default();
    out.push_str("\nlast scaler decisions (newest first):\n");
    for d in decisions.iter().take(10) {
        out.push_str(&format!(
            "  {}\n",
            serde_json::to_string(d).unwrap_or_default()
        ));
    }
    out
}
