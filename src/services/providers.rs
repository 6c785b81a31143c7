//! The configured OpenID Providers (`[provider]` or `[[provider]]`), the default first:
//! found by index (routes), by name (login states, sessions, the chooser) and by issuer
//! (logout tokens, JWT access tokens).

use crate::clock::Clock;
use crate::config::ProviderConfig;
use crate::metrics::Metrics;
use crate::provider::Provider;
use crate::session::Session;
use std::sync::Arc;

pub(crate) struct Providers {
    /// Never empty (validated config has at least one provider); the default first.
    list: Vec<Arc<Provider>>,
}

impl Providers {
    pub(crate) fn new(configs: &[ProviderConfig], clock: &Clock, metrics: &Arc<Metrics>) -> Self {
        Providers {
            list: configs
                .iter()
                .map(|cfg| {
                    Arc::new(Provider::new(
                        cfg.clone(),
                        clock.clone(),
                        Arc::clone(metrics),
                    ))
                })
                .collect(),
        }
    }

    /// The providers of a reloaded config: one whose config is unchanged (same name and
    /// every key the same) is kept with its metadata and keys; the others are new, and
    /// warm up at once.
    pub(crate) fn reloaded(
        &self,
        configs: &[ProviderConfig],
        clock: &Clock,
        metrics: &Arc<Metrics>,
    ) -> Self {
        let list = configs
            .iter()
            .map(|cfg| match self.list.iter().find(|p| p.config() == cfg) {
                Some(kept) => Arc::clone(kept),
                None => {
                    let fresh = Arc::new(Provider::new(
                        cfg.clone(),
                        clock.clone(),
                        Arc::clone(metrics),
                    ));
                    fresh.warm_up();
                    fresh
                }
            })
            .collect();
        Providers { list }
    }

    /// The default provider (the first configured).
    pub(crate) fn default_provider(&self) -> &Arc<Provider> {
        &self.list[0]
    }

    /// The provider at `index` of `Config::providers` (route indexes are validated).
    pub(crate) fn at(&self, index: usize) -> &Arc<Provider> {
        self.list.get(index).unwrap_or(&self.list[0])
    }

    pub(crate) fn by_name(&self, name: &str) -> Option<(usize, &Arc<Provider>)> {
        self.list
            .iter()
            .enumerate()
            .find(|(_, p)| p.config().name == name)
    }

    /// The provider whose issuer is `iss` (ignoring one trailing slash).
    pub(crate) fn by_issuer(&self, iss: &str) -> Option<(usize, &Arc<Provider>)> {
        self.list
            .iter()
            .enumerate()
            .find(|(_, p)| p.config().is_issuer(iss))
    }

    /// The provider `session` was logged in at: the one it names (a session sealed before
    /// sessions named theirs means the default) when that one has the session's issuer;
    /// else the one with the session's issuer (a provider renamed keeps its sessions, a
    /// name given to another issuer does not take them over); `None` when no configured
    /// provider has it.
    pub(crate) fn of_session(&self, session: &Session) -> Option<(usize, &Arc<Provider>)> {
        let named = if session.provider.is_empty() {
            Some((0, &self.list[0]))
        } else {
            self.by_name(&session.provider)
        };
        match named {
            Some((i, p)) if p.config().is_issuer(&session.iss) => Some((i, p)),
            _ => self.by_issuer(&session.iss),
        }
    }

    /// How many providers are configured (at least one).
    pub(crate) fn len(&self) -> usize {
        self.list.len()
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &Arc<Provider>> {
        self.list.iter()
    }

    /// Starts every provider's background warm-up.
    pub(crate) fn warm_up(&self) {
        for provider in &self.list {
            provider.warm_up();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn providers() -> Providers {
        let text = r#"
[[provider]]
name = "a"
issuer = "https://a.example"
client_id = "x"
[[provider]]
name = "b"
issuer = "https://b.example/"
client_id = "x"
[session]
passphrase = "0123456789abcdef0123"
[[route]]
path = "/"
upstream = "http://127.0.0.1:7000"
"#;
        let cfg = Config::from_toml(text, "test", None).unwrap();
        Providers::new(&cfg.providers, &Clock::system(), &Arc::new(Metrics::new()))
    }

    fn session(provider: &str, iss: &str) -> Session {
        Session {
            provider: provider.into(),
            iss: iss.into(),
            ..Session::default()
        }
    }

    fn index(p: &Providers, s: &Session) -> Option<usize> {
        p.of_session(s).map(|(i, _)| i)
    }

    #[test]
    fn a_session_belongs_to_the_provider_of_its_issuer() {
        let p = providers();
        assert_eq!(index(&p, &session("a", "https://a.example")), Some(0));
        assert_eq!(index(&p, &session("b", "https://b.example")), Some(1));
        // Sealed before sessions named their provider: the default's.
        assert_eq!(index(&p, &session("", "https://a.example")), Some(0));
        // A renamed provider keeps its sessions; a name now given to another issuer does
        // not take them over.
        assert_eq!(
            index(&p, &session("old-name", "https://b.example")),
            Some(1)
        );
        assert_eq!(index(&p, &session("a", "https://b.example/")), Some(1));
        assert_eq!(index(&p, &session("", "https://b.example")), Some(1));
        // No configured provider has the issuer.
        assert_eq!(index(&p, &session("a", "https://gone.example")), None);
        assert_eq!(index(&p, &session("", "")), None);
        // Lookups by name and issuer.
        assert_eq!(p.by_name("b").map(|(i, _)| i), Some(1));
        assert!(p.by_name("c").is_none());
        assert_eq!(p.by_issuer("https://a.example/").map(|(i, _)| i), Some(0));
        assert_eq!(p.default_provider().config().name, "a");
    }

    #[tokio::test]
    async fn a_reload_keeps_the_providers_whose_entries_are_unchanged() {
        let before = providers();
        let mut configs: Vec<ProviderConfig> = before.iter().map(|p| p.config().clone()).collect();
        configs[1].scopes.push("offline_access".into());
        configs.swap(0, 1);
        let metrics = Arc::new(Metrics::new());
        let after = before.reloaded(&configs, &Clock::system(), &metrics);
        assert!(!Arc::ptr_eq(after.at(0), before.at(1)), "b changed: new");
        assert!(
            Arc::ptr_eq(after.at(1), before.at(0)),
            "a kept (now second)"
        );
    }
}
