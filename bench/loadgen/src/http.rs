//! The HTTP client: keep-alive connections to one loopback base URL.

use std::time::Duration;

use reqwest::header::{CONTENT_TYPE, COOKIE, SET_COOKIE};
use reqwest::{Client, Method};
use serde_json::Value;

use crate::util::{Result, fail};

/// The session cookie Coop sets.
pub const SESSION_COOKIE: &str = "coop_session";

#[derive(Clone)]
pub struct Api {
    client: Client,
    base: String,
}

pub struct Answer {
    pub status: u16,
    pub body: Vec<u8>,
    /// `coop_session=TOKEN` from Set-Cookie, if the answer set one.
    pub cookie: Option<String>,
}

impl Answer {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    pub fn snippet(&self) -> String {
        String::from_utf8_lossy(&self.body[..self.body.len().min(300)]).into_owned()
    }
}

/// Only `http://127.0.0.1:PORT` is accepted: this tool never leaves the machine.
pub fn check_loopback(base: &str) -> Result<String> {
    let base = base.trim_end_matches('/');
    let Some(rest) = base.strip_prefix("http://127.0.0.1") else {
        return fail(format!(
            "--base must be http://127.0.0.1:PORT, got {base:?}"
        ));
    };
    if !(rest.is_empty()
        || (rest.starts_with(':') && rest[1..].bytes().all(|b| b.is_ascii_digit())))
    {
        return fail(format!(
            "--base must be http://127.0.0.1:PORT, got {base:?}"
        ));
    }
    Ok(base.to_owned())
}

impl Api {
    pub fn new(base: &str, max_idle: usize, timeout: Duration) -> Result<Self> {
        let base = check_loopback(base)?;
        let client = Client::builder()
            .pool_max_idle_per_host(max_idle)
            .pool_idle_timeout(Duration::from_secs(60))
            .tcp_nodelay(true)
            .timeout(timeout)
            .connect_timeout(Duration::from_secs(5))
            .no_proxy()
            .build()?;
        Ok(Self { client, base })
    }

    pub async fn call(
        &self,
        method: Method,
        path: &str,
        cookie: Option<&str>,
        body: Option<&Value>,
    ) -> Result<Answer> {
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.base))
            .header("accept", "application/json");
        if let Some(cookie) = cookie {
            request = request.header(COOKIE, cookie);
        }
        if let Some(body) = body {
            request = request
                .header(CONTENT_TYPE, "application/json")
                .body(serde_json::to_vec(body)?);
        }
        let response = request.send().await?;
        let status = response.status().as_u16();
        let cookie = response
            .headers()
            .get_all(SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .filter_map(|v| v.split(';').next())
            .map(str::trim)
            .find(|v| {
                v.strip_prefix(SESSION_COOKIE)
                    .and_then(|r| r.strip_prefix('='))
                    .is_some_and(|t| !t.is_empty())
            })
            .map(str::to_owned);
        let body = response.bytes().await?.to_vec();
        Ok(Answer {
            status,
            body,
            cookie,
        })
    }

    pub async fn get(&self, path: &str, cookie: Option<&str>) -> Result<Answer> {
        self.call(Method::GET, path, cookie, None).await
    }

    pub async fn post(&self, path: &str, cookie: Option<&str>, body: &Value) -> Result<Answer> {
        self.call(Method::POST, path, cookie, Some(body)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback() {
        assert!(check_loopback("http://127.0.0.1:8080/").is_ok());
        assert!(check_loopback("http://127.0.0.1").is_ok());
        assert!(check_loopback("http://127.0.0.1.example.org").is_err());
        assert!(check_loopback("http://10.0.0.1:80").is_err());
        assert!(check_loopback("https://127.0.0.1:80").is_err());
    }
}
