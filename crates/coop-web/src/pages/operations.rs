//! `/operations`: live charts of the last hour for platform operators, drawn
//! from the instances' own metric samples (`crate::operations`), this
//! instance's and its peers' (`COOP_OPERATIONS_PEERS`). htmx redraws them
//! every sampling interval. Everyone else, coordinators included, gets the
//! 404 page: the page is not advertised to the co-ops' members.

use askama::Template;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use coop_domain::Role;

use super::errors::PageError;
use super::forms::Csrf;
use super::layout::{Layout, Nav};
use super::ok;
use crate::http::auth::request_read_after;
use crate::http::session_token;
use crate::operations::{
    DecisionRow, InstanceSamples, charts, cluster_view, peer_samples, worker_samples,
};
use crate::state::AppState;

/// A platform operator's page request.
pub struct OperatorPage {
    layout: Layout,
    /// The session token, to ask the peers with.
    token: String,
}

impl FromRequestParts<AppState> for OperatorPage {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let not_found = || PageError::NotFound("there is no such page".into()).into_response();
        let csrf = Csrf::of(parts);
        let Some(token) = session_token(&parts.headers).map(str::to_owned) else {
            return Err(not_found());
        };
        let read_after = request_read_after(parts);
        let caller = match state.services.accounts.caller(&token, &read_after).await {
            Ok(Some(caller)) if caller.role == Role::Operator => caller,
            Ok(_) => return Err(not_found()),
            Err(err) => return Err(PageError::from(err).into_response()),
        };
        let nav = Nav {
            email: caller.email,
            coordinator: false,
            teaches: false,
            operator: true,
            family_id: None,
        };
        Ok(Self {
            layout: Layout::new("Operations", Some(nav), &csrf),
            token,
        })
    }
}

#[derive(Template)]
#[template(path = "operations.html")]
struct OperationsPage {
    layout: Layout,
    every: u64,
    view: View,
}

/// The redrawn part of the page.
#[derive(Template)]
#[template(path = "operations_charts.html")]
struct View {
    charts: Vec<charts::Chart>,
    problems: Vec<String>,
    instances: Vec<String>,
    /// `None` outside a `coop cluster`: the section is left out.
    decisions: Option<Vec<DecisionRow>>,
}

impl View {
    async fn gather(state: &AppState, token: &str) -> Self {
        let gathered = gather(state, token).await;
        Self {
            charts: charts::charts(&gathered.instances),
            problems: gathered.problems,
            instances: gathered.instances.into_iter().map(|i| i.instance).collect(),
            decisions: gathered.decisions,
        }
    }
}

pub async fn page(State(state): State<AppState>, me: OperatorPage) -> Response {
    ok(&OperationsPage {
        layout: me.layout,
        every: state.operations.every().as_secs().max(1),
        view: View::gather(&state, &me.token).await,
    })
}

/// The charts alone, for htmx's periodic redraw.
pub async fn fragment(State(state): State<AppState>, me: OperatorPage) -> Response {
    ok(&View::gather(&state, &me.token).await)
}

/// What the page draws: every instance's samples (this one's first), the
/// scaler's decisions when this instance is in a `coop cluster`, and what
/// could not be asked.
struct Gathered {
    instances: Vec<InstanceSamples>,
    decisions: Option<Vec<DecisionRow>>,
    problems: Vec<String>,
}

/// This instance's samples first, then each peer's (asked at once): the
/// instances and workers `coop cluster`'s control API lists
/// (COOP_CLUSTER_CONTROL) and COOP_OPERATIONS_PEERS. A peer that does not
/// answer is named on the page.
async fn gather(state: &AppState, token: &str) -> Gathered {
    let mut problems = Vec::new();
    let mut peers: Vec<String> = Vec::new();
    let mut workers: Vec<String> = Vec::new();
    let mut decisions = None;
    if let (Some(control), Some(cluster_token)) = (
        state.http.cluster_control,
        state.http.metrics_token.as_ref(),
    ) {
        match cluster_view(&state.peers, control, cluster_token.secret()).await {
            Ok(view) => {
                let own = state.http.listen.to_string();
                peers.extend(
                    view.instances
                        .into_iter()
                        .filter(|address| *address != own)
                        .map(|address| format!("http://{address}")),
                );
                workers = view.workers;
                decisions = Some(view.decisions);
            }
            Err(problem) => problems.push(problem),
        }
    }
    for peer in &state.http.operations_peers.0 {
        if !peers.contains(peer) {
            peers.push(peer.clone());
        }
    }
    let mut instances = vec![InstanceSamples {
        instance: state.instance_id.clone(),
        samples: state.operations.snapshot(),
    }];
    let cookie = format!("{}={token}", crate::http::SESSION_COOKIE);
    let mut asking = tokio::task::JoinSet::new();
    for (i, peer) in peers.into_iter().enumerate() {
        let (client, cookie) = (state.peers.clone(), cookie.clone());
        asking.spawn(async move { (i, peer_samples(&client, &peer, &cookie).await) });
    }
    // Workers are asked with the cluster's metrics token, which `coop
    // cluster` gives every member (workers exist only inside one).
    if let Some(metrics_token) = state.http.metrics_token.as_ref() {
        let offset = asking.len();
        for (i, worker) in workers.into_iter().enumerate() {
            let (client, token) = (state.peers.clone(), metrics_token.secret().to_owned());
            asking
                .spawn(async move { (offset + i, worker_samples(&client, &worker, &token).await) });
        }
    }
    let mut answers = asking.join_all().await;
    answers.sort_by_key(|(i, _)| *i);
    for (_, answer) in answers {
        match answer {
            Ok(peer) => instances.push(peer),
            Err(problem) => problems.push(problem),
        }
    }
    Gathered {
        instances,
        decisions,
        problems,
    }
}
