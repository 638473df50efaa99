//! Every HTTP route of Hale is added through [`Routes`], which makes its author say
//! who may reach it ([`RoutePolicy`]) and keeps the list (`hale-server` logs it and a
//! test checks that no route is added any other way).

use axum::Router;
use axum::routing::MethodRouter;

/// Who may reach a route before the gate decides each interaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoutePolicy {
    /// Any caller: the route serves no health information (the CapabilityStatement,
    /// health checks).
    Public,
    /// Health information: the handler works only through the repository made for the
    /// caller's request context, so the gate decides every interaction.
    Gated,
    /// The authorization server's pages and endpoints: they authenticate the caller
    /// themselves (a password, a session cookie, a client secret, a grant), and reach
    /// health information (a clinician's patient picker) only through a repository made
    /// for the signed-in user.
    Authorization,
    /// A page of the clinician application: the handler answers only a signed-in
    /// session (else it sends the browser to sign in) and reaches health information
    /// only through the repository made for the session's user.
    Page,
    /// Fixed content compiled into the binary (a stylesheet, a script): no health
    /// information, no session.
    Asset,
}

/// A router whose every route has a declared policy.
#[derive(Debug)]
pub struct Routes<S = ()> {
    router: Router<S>,
    declared: Vec<(&'static str, RoutePolicy)>,
}

impl<S: Clone + Send + Sync + 'static> Default for Routes<S> {
    fn default() -> Self {
        Self::new()
    }
}

impl<S: Clone + Send + Sync + 'static> Routes<S> {
    pub fn new() -> Self {
        Routes { router: Router::new(), declared: Vec::new() }
    }

    /// A route open to every caller.
    pub fn public(self, path: &'static str, handler: MethodRouter<S>) -> Self {
        self.add(path, RoutePolicy::Public, handler)
    }

    /// A route of the authorization server.
    pub fn authorization(self, path: &'static str, handler: MethodRouter<S>) -> Self {
        self.add(path, RoutePolicy::Authorization, handler)
    }

    /// A route whose handlers reach health information only through the gate.
    pub fn gated(self, path: &'static str, handler: MethodRouter<S>) -> Self {
        self.add(path, RoutePolicy::Gated, handler)
    }

    /// A page of the clinician application.
    pub fn page(self, path: &'static str, handler: MethodRouter<S>) -> Self {
        self.add(path, RoutePolicy::Page, handler)
    }

    /// Fixed content compiled into the binary.
    pub fn asset(self, path: &'static str, handler: MethodRouter<S>) -> Self {
        self.add(path, RoutePolicy::Asset, handler)
    }

    fn add(mut self, path: &'static str, policy: RoutePolicy, handler: MethodRouter<S>) -> Self {
        self.router = self.router.route(path, handler);
        self.declared.push((path, policy));
        self
    }

    /// Gives the routes their state.
    pub fn with_state<S2>(self, state: S) -> Routes<S2> {
        Routes { router: self.router.with_state(state), declared: self.declared }
    }

    /// Both sets of routes.
    pub fn merge(mut self, other: Routes<S>) -> Self {
        self.router = self.router.merge(other.router);
        self.declared.extend(other.declared);
        self
    }

    /// Every route with its policy, in the order added.
    pub fn declared(&self) -> &[(&'static str, RoutePolicy)] {
        &self.declared
    }

    /// The router, and the list of routes with their policies.
    pub fn into_parts(self) -> (Router<S>, Vec<(&'static str, RoutePolicy)>) {
        (self.router, self.declared)
    }
}
