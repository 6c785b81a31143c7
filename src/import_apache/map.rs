//! From parsed Apache sections to gateway tables: where each directive applies (main
//! server, `<VirtualHost>`, `<Location>`), what it becomes, and what cannot be mapped.

use super::doc::{list, s, Table};
use super::parse::{Directive, Node, Section, Source};
use super::{EnvNote, Note};
use std::collections::BTreeMap;
use toml::Value;

/// A claim rule no token carries: a route whose Apache authorization could not be mapped
/// refuses everyone (403) until the rule is rewritten, instead of letting anyone in.
pub const FAIL_CLOSED_RULE: &str = "oidc_gateway_import_unmapped_rule:see-the-report";

/// Apache core and module directives that configure Apache itself: the gateway needs no
/// counterpart. Listed in the report as ignored, with the reason.
const APACHE_ONLY: &[(&str, &str)] = &[
    ("loadmodule", "Apache loads modules; the gateway has them built in"),
    ("loadfile", "Apache loads libraries; the gateway has them built in"),
    ("serverroot", "an Apache process setting"),
    ("pidfile", "an Apache process setting"),
    ("user", "an Apache process setting (run the gateway under its own user, e.g. systemd's DynamicUser)"),
    ("group", "an Apache process setting"),
    ("mutex", "an Apache process setting"),
    ("servertokens", "an Apache process setting"),
    ("serversignature", "an Apache process setting"),
    ("serveradmin", "shown on Apache's error pages only"),
    ("errorlog", "the gateway logs to stderr ([log])"),
    ("customlog", "the gateway logs to stderr ([log] access = true for one line per request)"),
    ("transferlog", "the gateway logs to stderr ([log] access = true for one line per request)"),
    ("loglevel", "the gateway logs to stderr ([log] level)"),
    ("logformat", "the gateway logs to stderr ([log] format)"),
    ("authname", "the realm of Apache's WWW-Authenticate; the gateway sends none"),
    ("sslproxyengine", "the gateway speaks https to an upstream whose URL is https"),
    ("sslengine", "see SSLCertificateFile"),
    ("sslprotocol", "the gateway's TLS is 1.2 and 1.3 with rustls' defaults"),
    ("sslciphersuite", "the gateway's TLS is 1.2 and 1.3 with rustls' defaults"),
    ("sslhonorcipherorder", "the gateway's TLS is 1.2 and 1.3 with rustls' defaults"),
    ("sslcompression", "the gateway's TLS never compresses"),
    ("sslsessiontickets", "the gateway's TLS uses rustls' defaults"),
    ("sslstaplingcache", "the gateway's TLS uses rustls' defaults"),
    ("sslusestapling", "the gateway's TLS uses rustls' defaults"),
    ("documentroot", "files Apache serves itself: the gateway only proxies"),
    ("directoryindex", "files Apache serves itself: the gateway only proxies"),
    ("options", "files Apache serves itself: the gateway only proxies"),
    ("allowoverride", "files Apache serves itself: the gateway only proxies"),
    ("keepalive", "the gateway keeps connections alive (server.keepalive_timeout)"),
    ("keepalivetimeout", "the gateway keeps connections alive (server.keepalive_timeout)"),
    ("maxkeepaliverequests", "the gateway keeps connections alive (server.keepalive_timeout)"),
    ("hostnamelookups", "the gateway never resolves client addresses"),
    ("usecanonicalname", "the gateway redirects to the host the browser used (server.public_url fixes one)"),
    ("oidcdebugmasksecrets", "the gateway never logs secrets"),
    ("oidcmetricsdata", "the gateway's metrics are on the admin listener ([admin], /metrics)"),
    ("oidcmetricspublish", "the gateway's metrics are on the admin listener ([admin], /metrics)"),
    ("oidccacheencrypt", "the gateway seals everything it stores"),
    ("oidccacheshmentrysizemax", "the gateway's memory store has no entry size limit"),
    ("oidcsessioncachefallbacktocookie", "the gateway's stores do not fall back"),
    ("oidcproviderbackchannellogoutsupported", "the gateway always accepts back-channel logout at <redirect_uri>?logout=backchannel"),
    ("oidcvalidateissuer", "the gateway always validates the issuer"),
    ("oidcidtokeniatslack", "the gateway allows 600 s, mod_auth_openidc's default"),
    ("oidcprovidermetadatarefreshinterval", "the gateway reads the metadata at start and again when it fails"),
];

/// Where a per-directory block applies.
#[derive(Debug, Clone, PartialEq)]
enum AreaKind {
    /// The main server's or a virtual host's own level: every path.
    Base,
    /// `<Location>` (or a `<LocationMatch>` reduced to a prefix).
    Prefix(String),
    /// `<Proxy URL*>` or `<Directory proxy:URL>`: requests sent to upstreams below URL.
    Upstream(String),
}

#[derive(Debug, Clone)]
enum Req {
    Line(Directive),
    All(Vec<Req>),
    Any(Vec<Req>),
    Refused(Source, usize, String, String),
}

#[derive(Debug, Clone)]
struct Area {
    scope: usize,
    kind: AreaKind,
    seq: usize,
    directives: Vec<Directive>,
    require: Vec<Req>,
}

#[derive(Debug, Clone)]
struct VHost {
    names: Vec<(String, Source)>,
    preserve_host: Option<(bool, Source)>,
}

#[derive(Debug, Clone)]
enum Target {
    Upstream(String),
    Excluded,
}

#[derive(Debug, Clone)]
struct Mapping {
    scope: usize,
    path: String,
    target: Target,
    directive: Directive,
}

/// What an authorization block comes to.
#[derive(Debug, Clone, PartialEq)]
enum Authz {
    Anyone,
    ValidUser,
    Claims(Vec<String>),
}

/// A provider's keys (one for the static `OIDCProvider*` settings, one per metadata-dir
/// issuer).
pub(crate) struct ProviderOut {
    pub table: Table,
    pub name: Option<String>,
}

pub(crate) struct Mapper {
    vhosts: Vec<VHost>,
    areas: Vec<Area>,
    mappings: Vec<Mapping>,
    globals: Vec<(usize, Directive)>,
    pub unmapped: Vec<Note>,
    pub ignored: Vec<Note>,
    pub env: Vec<EnvNote>,
    pub server: Table,
    pub provider: Table,
    pub extra_providers: Vec<ProviderOut>,
    pub session: Table,
    pub headers: Table,
    pub header_sets: Vec<Table>,
    pub oauth: Table,
    pub hooks: Table,
    pub redis: Table,
    pub routes: Vec<Table>,
    /// `table.key` -> (scope, value, where): to notice one key set differently per host.
    assigned: BTreeMap<String, (usize, Value, Source)>,
    /// Secrets seen, by directive (compared, never printed).
    secrets: BTreeMap<String, String>,
    /// OIDCPassClaimsAs was given (else mod_auth_openidc's latin1 default is written).
    claims_encoding_set: bool,
    scopes_set: bool,
    session_type: Option<(String, Source)>,
    cache_type: Option<(String, Source)>,
    redis_needed: bool,
    trusted_proxies_given: bool,
    /// Paths whose ProxyPass could not be mapped (reported once, there).
    failed_paths: Vec<String>,
    redis_server: Option<Directive>,
    redis_database: Option<Directive>,
}

fn lc(d: &Directive) -> String {
    d.name.to_ascii_lowercase()
}

fn src(d: &Directive) -> String {
    format!("{}, {}", d.name, d.source)
}

fn seconds(arg: &str) -> Option<u64> {
    arg.trim().parse::<u64>().ok()
}

fn on_off(arg: &str) -> Option<bool> {
    match arg.to_ascii_lowercase().as_str() {
        "on" | "true" | "yes" => Some(true),
        "off" | "false" | "no" => Some(false),
        _ => None,
    }
}

/// Segment-bounded prefix test on paths (`/app` covers `/app` and `/app/x`, not `/apps`).
fn covers(prefix: &str, path: &str) -> bool {
    let prefix = prefix.trim_end_matches('/');
    let path_t = path.trim_end_matches('/');
    prefix.is_empty()
        || path_t == prefix
        || path_t
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// `<LocationMatch>` regexes that say "this prefix and below": `^/api`, `^/api/`,
/// `^/api/.*`, `^/api(/.*)?$`, `^/api(/|$)`. Anything else cannot be a route path.
fn regex_prefix(regex: &str) -> Option<String> {
    let body = regex.strip_prefix('^')?;
    let mut prefix = String::new();
    let mut chars = body.char_indices().peekable();
    let mut rest_at = body.len();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => match chars.peek() {
                Some(&(_, n)) if "./-_~".contains(n) => {
                    prefix.push(n);
                    chars.next();
                }
                _ => {
                    rest_at = i;
                    break;
                }
            },
            c if c.is_ascii_alphanumeric() || "/-_~".contains(c) => prefix.push(c),
            _ => {
                rest_at = i;
                break;
            }
        }
    }
    let rest = &body[rest_at..];
    let below = [
        "", "/", ".*", "/.*", "(/.*)?", "(/.*)?$", "(/|$)", "(/.*|$)", "/?", "(/)?", "/?.*",
        "($|/)", "($|/.*)",
    ];
    if !prefix.starts_with('/') || !below.contains(&rest) {
        return None;
    }
    let trimmed = prefix.trim_end_matches('/');
    Some(if trimmed.is_empty() {
        "/".to_string()
    } else {
        trimmed.to_string()
    })
}

/// A route path for a `<Location>` argument, or why not.
fn location_path(arg: &str) -> Result<String, String> {
    if !arg.starts_with('/') {
        return Err(format!("{arg:?} is not a path starting with /"));
    }
    if arg.contains(['*', '?', '[']) {
        return Err(format!(
            "{arg:?} is a wildcard; route paths are prefixes: use the literal part as a <Location>"
        ));
    }
    Ok(arg.to_string())
}

/// A route host for a ServerName/ServerAlias value (no scheme, no port).
fn host_name(value: &str) -> Option<String> {
    let v = value
        .strip_prefix("https://")
        .or_else(|| value.strip_prefix("http://"))
        .unwrap_or(value);
    let v = match v.rsplit_once(':') {
        Some((h, port)) if port.chars().all(|c| c.is_ascii_digit()) => h,
        _ => v,
    };
    let v = v.trim_end_matches('.').to_ascii_lowercase();
    let bare = v.strip_prefix("*.").unwrap_or(&v);
    let valid = !bare.is_empty()
        && bare
            .split('.')
            .all(|l| !l.is_empty() && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'));
    valid.then_some(v)
}

/// Splits `ProxyPass` target URL into the gateway's upstream for `path`, or says why not.
fn upstream_for(path: &str, target: &str) -> Result<String, String> {
    let (scheme, rest) = target
        .split_once("://")
        .ok_or_else(|| format!("{target:?} is not a URL"))?;
    let scheme = match scheme.to_ascii_lowercase().as_str() {
        "http" | "ws" => "http",
        "https" | "wss" => "https",
        "balancer" => {
            return Err(
                "a mod_proxy_balancer group: the gateway has one upstream per route; put a load balancer behind it, or name one member".to_string(),
            )
        }
        other => return Err(format!("{other}:// upstreams are not supported (http and https only)")),
    };
    let (authority, upath) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    if authority.is_empty() || upath.contains(['?', '#']) {
        return Err(format!("{target:?} is not an upstream URL without query"));
    }
    let want = path.trim_end_matches('/');
    let have = upath.trim_end_matches('/');
    let Some(base) = have.strip_suffix(want) else {
        return Err(format!(
            "maps {path} to the upstream path {}: the gateway forwards the request path unchanged (it only prepends the upstream's path), so a prefix cannot be stripped or renamed; make the upstream serve under {path}, or use ProxyPass {path} {scheme}://{authority}{path}",
            if upath.is_empty() { "/" } else { upath }
        ));
    };
    Ok(format!("{scheme}://{authority}{base}"))
}

/// An environment variable name from a provider name (`corp-sso` -> `CORP_SSO`).
fn env_suffix(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect()
}

/// Whether a value is wholly one `${NAME}` reference.
fn env_reference(value: &str) -> Option<&str> {
    let name = value.strip_prefix("${")?.strip_suffix('}')?;
    (!name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
        .then_some(name)
}

impl Mapper {
    pub(crate) fn new() -> Mapper {
        Mapper {
            vhosts: vec![VHost {
                names: Vec::new(),
                preserve_host: None,
            }],
            areas: Vec::new(),
            mappings: Vec::new(),
            globals: Vec::new(),
            unmapped: Vec::new(),
            ignored: Vec::new(),
            env: Vec::new(),
            server: Table::new("[server]"),
            provider: Table::new("[provider]"),
            extra_providers: Vec::new(),
            session: Table::new("[session]"),
            headers: Table::new("[headers]"),
            header_sets: Vec::new(),
            oauth: Table::new("[oauth]"),
            hooks: Table::new("[hooks]"),
            redis: Table::new("[redis]"),
            routes: Vec::new(),
            assigned: BTreeMap::new(),
            secrets: BTreeMap::new(),
            claims_encoding_set: false,
            scopes_set: false,
            session_type: None,
            cache_type: None,
            redis_needed: false,
            trusted_proxies_given: false,
            failed_paths: Vec::new(),
            redis_server: None,
            redis_database: None,
        }
    }

    fn report(&mut self, d: &Directive, message: impl Into<String>) {
        self.unmapped.push(Note {
            source: d.source.clone(),
            seq: d.seq,
            directive: d.name.clone(),
            message: message.into(),
        });
    }

    fn report_at(
        &mut self,
        source: &Source,
        seq: usize,
        directive: &str,
        message: impl Into<String>,
    ) {
        self.unmapped.push(Note {
            source: source.clone(),
            seq,
            directive: directive.to_string(),
            message: message.into(),
        });
    }

    fn ignore(&mut self, d: &Directive, message: impl Into<String>) {
        self.ignored.push(Note {
            source: d.source.clone(),
            seq: d.seq,
            directive: d.name.clone(),
            message: message.into(),
        });
    }

    fn need_env(&mut self, name: &str, what: String, source: Option<Source>) {
        if !self.env.iter().any(|e| e.name == name) {
            self.env.push(EnvNote {
                name: name.to_string(),
                what,
                source,
            });
        }
    }

    // ----- walking the sections -------------------------------------------------------

    pub(crate) fn walk(&mut self, nodes: &[Node], scope: usize, area: Option<usize>) {
        for node in nodes {
            match node {
                Node::Directive(d) => self.directive(d, scope, area),
                Node::Section(s) => self.section(s, scope, area),
            }
        }
    }

    fn base_area(&mut self, scope: usize) -> usize {
        if let Some(i) = self
            .areas
            .iter()
            .position(|a| a.scope == scope && a.kind == AreaKind::Base)
        {
            return i;
        }
        self.areas.push(Area {
            scope,
            kind: AreaKind::Base,
            seq: 0,
            directives: Vec::new(),
            require: Vec::new(),
        });
        self.areas.len() - 1
    }

    fn directive(&mut self, d: &Directive, scope: usize, area: Option<usize>) {
        let name = lc(d);
        let per_dir = matches!(
            name.as_str(),
            "authtype"
                | "require"
                | "oidcunauthaction"
                | "oidcunautzaction"
                | "oidcpreservepost"
                | "oidcpathscope"
                | "oidcpathauthrequestparams"
        );
        if name == "servername" || name == "serveralias" {
            if area.is_some() {
                self.report(
                    d,
                    "only applies to a server or <VirtualHost>; move it there",
                );
                return;
            }
            for a in &d.args {
                self.vhosts[scope].names.push((a.clone(), d.source.clone()));
            }
            return;
        }
        if name == "proxypreservehost" {
            match d.args.first().and_then(|a| on_off(a)) {
                Some(on) => self.vhosts[scope].preserve_host = Some((on, d.source.clone())),
                None => self.report(d, "expects On or Off"),
            }
            return;
        }
        if name == "proxypass" || name == "proxypassmatch" {
            self.proxy_pass(d, scope, area);
            return;
        }
        if name == "proxypassreverse" {
            self.ignore(d, "the gateway does not rewrite the upstream's Location headers: an upstream that redirects to its own address needs preserve_host = true (ProxyPreserveHost On), or relative redirects");
            return;
        }
        if name == "require" {
            let a = match area {
                Some(a) => a,
                None => self.base_area(scope),
            };
            self.areas[a].require.push(Req::Line(d.clone()));
            return;
        }
        if per_dir {
            let a = match area {
                Some(a) => a,
                None => self.base_area(scope),
            };
            self.areas[a].directives.push(d.clone());
            return;
        }
        self.globals.push((scope, d.clone()));
    }

    fn proxy_pass(&mut self, d: &Directive, scope: usize, area: Option<usize>) {
        if d.is("ProxyPassMatch") {
            let path = d.args.first().and_then(|r| regex_prefix(r));
            match (path, d.args.get(1)) {
                (Some(p), Some(url)) => {
                    let url = url.replace("$1", "");
                    self.add_mapping(d, scope, p, &url, &d.args[2..]);
                }
                _ => self.report(d, "a regex the importer cannot turn into a path prefix; write a ProxyPass for each prefix"),
            }
            return;
        }
        let (path, rest) = match area {
            Some(a) => match &self.areas[a].kind {
                AreaKind::Prefix(p) => (p.clone(), &d.args[..]),
                _ => {
                    self.report(d, "inside a section that is not a <Location>; move it to a <Location> or the server level");
                    return;
                }
            },
            None => match d.args.first() {
                Some(p) => (p.clone(), &d.args[1..]),
                None => {
                    self.report(d, "has no arguments");
                    return;
                }
            },
        };
        let Some(url) = rest.first() else {
            self.report(d, "names no upstream URL");
            return;
        };
        if !path.starts_with('/') {
            self.report(d, format!("{path:?} is not a path starting with /"));
            return;
        }
        self.add_mapping(d, scope, path, &url.clone(), &rest[1..]);
    }

    fn add_mapping(
        &mut self,
        d: &Directive,
        scope: usize,
        path: String,
        url: &str,
        params: &[String],
    ) {
        if url == "!" {
            self.mappings.push(Mapping {
                scope,
                path,
                target: Target::Excluded,
                directive: d.clone(),
            });
            return;
        }
        match upstream_for(&path, url) {
            Ok(upstream) => {
                for p in params {
                    let key = p.split('=').next().unwrap_or(p).to_ascii_lowercase();
                    match key.as_str() {
                        "timeout" | "connectiontimeout" => self.report(
                            d,
                            format!("parameter {p}: the gateway's timeouts are global: server.upstream_timeout and server.upstream_connect_timeout"),
                        ),
                        "upgrade" if p.to_ascii_lowercase().ends_with("=websocket") => {}
                        "retry" | "keepalive" | "flushpackets" | "ttl" | "max" | "smax" | "min" => {
                            self.ignore(d, format!("parameter {p}: the gateway manages its upstream connections itself"))
                        }
                        _ => self.report(d, format!("parameter {p} has no gateway equivalent; check it is not needed")),
                    }
                }
                self.mappings.push(Mapping {
                    scope,
                    path,
                    target: Target::Upstream(upstream),
                    directive: d.clone(),
                });
            }
            Err(why) => {
                self.report(d, format!("{why}; no route was written for {path}"));
                self.failed_paths.push(path);
            }
        }
    }

    fn section(&mut self, s: &Section, scope: usize, area: Option<usize>) {
        let name = s.name.to_ascii_lowercase();
        let arg = s.args.first().cloned().unwrap_or_default();
        match name.as_str() {
            "ifmodule" | "ifdefine" | "ifversion" | "iffile" | "ifdirective" | "ifsection" => {
                if arg.starts_with('!') {
                    self.ignored.push(Note {
                        source: s.source.clone(),
                        seq: s.seq,
                        directive: format!("<{}>", s.name),
                        message: "a negated condition (what Apache does without a module or define): its content was not read".to_string(),
                    });
                } else {
                    self.walk(&s.children, scope, area);
                }
            }
            "virtualhost" => {
                if scope != 0 || area.is_some() {
                    self.section_refused(s, "a <VirtualHost> must be at the top level");
                    return;
                }
                self.vhosts.push(VHost {
                    names: Vec::new(),
                    preserve_host: None,
                });
                let id = self.vhosts.len() - 1;
                self.walk(&s.children, id, None);
                if self.vhosts[id].names.is_empty() {
                    let has_content = self.mappings.iter().any(|m| m.scope == id)
                        || self.areas.iter().any(|a| a.scope == id);
                    if has_content {
                        self.report_at(
                            &s.source,
                            s.seq,
                            &format!("<{}>", s.name),
                            "has no ServerName: its routes answer every host; add ServerName so they get route.host",
                        );
                    }
                }
            }
            "location" | "locationmatch" => {
                if area.is_some() {
                    self.section_refused(s, "nested in another section; Apache does not allow it");
                    return;
                }
                let regex = name == "locationmatch" || (arg == "~" && s.args.len() > 1);
                let path = if regex {
                    let r = if arg == "~" { &s.args[1] } else { &arg };
                    regex_prefix(r).ok_or_else(|| {
                        format!("the regex {r:?} is not a path prefix (^/path, ^/path/, ^/path(/.*)?$); the gateway routes on prefixes: write one <Location> per prefix")
                    })
                } else {
                    location_path(&arg)
                };
                match path {
                    Ok(p) => self.open_area(s, scope, AreaKind::Prefix(p)),
                    Err(why) => self.section_refused(s, &why),
                }
            }
            "proxy" | "proxymatch" => {
                let url = arg.trim_end_matches('*').to_string();
                if name == "proxymatch" {
                    self.section_refused(s, "a regex over upstream URLs; write <Location> sections for the paths instead");
                } else {
                    self.open_area(s, scope, AreaKind::Upstream(url));
                }
            }
            "directory" | "directorymatch" => {
                if let Some(url) = arg.strip_prefix("proxy:") {
                    let url = url.trim_end_matches('*').to_string();
                    self.open_area(s, scope, AreaKind::Upstream(url));
                } else {
                    self.filesystem(s);
                }
            }
            "files" | "filesmatch" => self.filesystem(s),
            "requireall" | "requireany" | "requirenone" => {
                let a = match area {
                    Some(a) => a,
                    None => self.base_area(scope),
                };
                let req = self.require_block(s);
                self.areas[a].require.push(req);
            }
            "limit" | "limitexcept" => self.section_refused(
                s,
                "method-dependent access control; the gateway authenticates every method, except those listed in route.allow_anonymous_methods (e.g. [\"OPTIONS\"] for CORS preflights)",
            ),
            _ => self.section_refused(s, "a section the gateway has no equivalent for"),
        }
    }

    fn filesystem(&mut self, s: &Section) {
        let has_auth = s.children.iter().any(|n| match n {
            Node::Directive(d) => {
                d.is("AuthType")
                    || lc(d).starts_with("oidc")
                    || d.is("Require") && !d.args.iter().any(|a| a.eq_ignore_ascii_case("granted"))
            }
            Node::Section(_) => false,
        });
        let message = "files Apache serves itself from the filesystem: the gateway only proxies (move the content behind an upstream and protect its path with a route)";
        if has_auth {
            self.report_at(&s.source, s.seq, &format!("<{}>", s.name), message);
        } else {
            self.ignored.push(Note {
                source: s.source.clone(),
                seq: s.seq,
                directive: format!("<{}>", s.name),
                message: message.to_string(),
            });
        }
    }

    fn section_refused(&mut self, s: &Section, why: &str) {
        self.report_at(
            &s.source,
            s.seq,
            &format!("<{}>", s.name),
            format!("{why}; its content was not mapped"),
        );
    }

    fn open_area(&mut self, s: &Section, scope: usize, kind: AreaKind) {
        self.areas.push(Area {
            scope,
            kind,
            seq: s.seq,
            directives: Vec::new(),
            require: Vec::new(),
        });
        let id = self.areas.len() - 1;
        self.walk(&s.children, scope, Some(id));
    }

    fn require_block(&mut self, s: &Section) -> Req {
        let mut items = Vec::new();
        for n in &s.children {
            match n {
                Node::Directive(d) if d.is("Require") => items.push(Req::Line(d.clone())),
                Node::Section(inner)
                    if ["requireall", "requireany", "requirenone"]
                        .contains(&inner.name.to_ascii_lowercase().as_str()) =>
                {
                    items.push(self.require_block(inner))
                }
                Node::Directive(d) => items.push(Req::Refused(
                    d.source.clone(),
                    d.seq,
                    d.name.clone(),
                    "only Require lines belong in an authorization block".to_string(),
                )),
                Node::Section(inner) => items.push(Req::Refused(
                    inner.source.clone(),
                    inner.seq,
                    format!("<{}>", inner.name),
                    "only Require lines belong in an authorization block".to_string(),
                )),
            }
        }
        match s.name.to_ascii_lowercase().as_str() {
            "requireall" => Req::All(items),
            "requireany" => Req::Any(items),
            _ => Req::Refused(
                s.source.clone(),
                s.seq,
                format!("<{}>", s.name),
                "negated authorization (<RequireNone>) has no gateway equivalent".to_string(),
            ),
        }
    }
}

// ----- authorization ----------------------------------------------------------------

/// Reduces one Require line or block; `Err` names the place and why it cannot be mapped.
fn authz(req: &Req) -> Result<Authz, (Source, usize, String, String)> {
    match req {
        Req::Refused(source, seq, name, why) => {
            Err((source.clone(), *seq, name.clone(), why.clone()))
        }
        Req::Line(d) => {
            let fail = |why: &str| Err((d.source.clone(), d.seq, d.name.clone(), why.to_string()));
            let kind = d
                .args
                .first()
                .map(|a| a.to_ascii_lowercase())
                .unwrap_or_default();
            match kind.as_str() {
                "valid-user" => Ok(Authz::ValidUser),
                "all" => match d.args.get(1).map(|a| a.to_ascii_lowercase()).as_deref() {
                    Some("granted") => Ok(Authz::Anyone),
                    _ => fail("denies everyone; the route was written to refuse everyone (403), remove the route if the path must not be reachable"),
                },
                "claim" => {
                    let rules: Vec<&String> = d.args[1..].iter().collect();
                    if rules.is_empty() {
                        return fail("names no claim");
                    }
                    or_of_rules(rules.iter().map(|r| vec![r.to_string()]).collect())
                        .ok_or(())
                        .or_else(|_| fail("several claims on one line are alternatives (any may hold), but require_claims must all hold; rewrite as one regex rule (name~^(a|b)$) or split the path"))
                }
                "claims_expr" => fail("a jq expression; the gateway has no jq: write it as require_claims rules (name:value, name~regex, dotted names), all of which must hold"),
                "not" => fail("negated rules have no gateway equivalent"),
                _ => fail("not a rule the gateway can check (it authorizes by claims only: valid-user, claim)"),
            }
        }
        Req::All(items) => {
            let mut rules = Vec::new();
            for item in items {
                match authz(item)? {
                    Authz::Anyone | Authz::ValidUser => {}
                    Authz::Claims(r) => rules.extend(r),
                }
            }
            Ok(if rules.is_empty() {
                Authz::ValidUser
            } else {
                Authz::Claims(rules)
            })
        }
        Req::Any(items) => any_of(items),
    }
}

/// Alternatives (a `<RequireAny>`, or several Require lines in one section).
fn any_of(items: &[Req]) -> Result<Authz, (Source, usize, String, String)> {
    let mut alternatives = Vec::new();
    let mut first_err = None;
    for item in items {
        match authz(item) {
            Ok(a) => alternatives.push(a),
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
    }
    if alternatives.contains(&Authz::Anyone) {
        return Ok(Authz::Anyone);
    }
    if let Some(e) = first_err {
        return Err(e);
    }
    if alternatives.contains(&Authz::ValidUser) {
        return Ok(Authz::ValidUser);
    }
    let sets: Vec<Vec<String>> = alternatives
        .into_iter()
        .filter_map(|a| match a {
            Authz::Claims(r) => Some(r),
            _ => None,
        })
        .collect();
    let at = items.iter().find_map(|i| match i {
        Req::Line(d) => Some((d.source.clone(), d.seq, d.name.clone())),
        _ => None,
    });
    or_of_rules(sets).ok_or_else(|| {
        let (source, seq, name) = at.unwrap_or((
            Source {
                file: String::new(),
                line: 0,
            },
            0,
            "Require".to_string(),
        ));
        (source, seq, name, "several Require lines (or a <RequireAny>) are alternatives, but require_claims must all hold; rewrite as one regex rule (name~^(a|b)$), or wrap them in <RequireAll> if all must hold".to_string())
    })
}

/// An OR of rule sets as gateway rules: one set as it is; several single `name:value`
/// rules on one claim as `name~^(v1|v2)$`. `None` when it cannot be expressed.
fn or_of_rules(sets: Vec<Vec<String>>) -> Option<Authz> {
    if sets.len() == 1 {
        return Some(Authz::Claims(sets.into_iter().next()?));
    }
    let mut name: Option<String> = None;
    let mut values = Vec::new();
    for set in &sets {
        let [rule] = set.as_slice() else { return None };
        let (n, v) = rule.split_once(':')?;
        if n.contains('~') {
            return None;
        }
        match &name {
            Some(existing) if existing != n => return None,
            _ => name = Some(n.to_string()),
        }
        values.push(regex::escape(v));
    }
    Some(Authz::Claims(vec![format!(
        "{}~^({})$",
        name?,
        values.join("|")
    )]))
}

// ----- global directives ----------------------------------------------------------------

impl Mapper {
    /// Sets `table.key`, noticing a key set differently in two virtual hosts.
    fn assign(&mut self, table: &str, key: &str, value: Value, d: &Directive, scope: usize) {
        let id = format!("{table}.{key}");
        if let Some((other_scope, other_value, other_src)) = self.assigned.get(&id) {
            if *other_scope != scope && *other_value != value {
                let other = other_src.clone();
                self.report(
                    d,
                    format!("differs from the value at {other}: the gateway has one {id} for every host; the value at {other} was kept, make them agree"),
                );
                return;
            }
        }
        self.assigned
            .insert(id, (scope, value.clone(), d.source.clone()));
        let t = self.table_mut(table);
        t.set(key, value, src(d));
    }

    fn table_mut(&mut self, table: &str) -> &mut Table {
        match table {
            "server" => &mut self.server,
            "provider" => &mut self.provider,
            "session" => &mut self.session,
            "headers" => &mut self.headers,
            "oauth" => &mut self.oauth,
            "hooks" => &mut self.hooks,
            "redis" => &mut self.redis,
            other => unreachable!("no table {other}"),
        }
    }

    fn note(&mut self, table: &str, d: &Directive, text: &str) {
        let line = format!("{}: {text}", src(d));
        self.table_mut(table).note(line);
    }

    /// Maps every server-level directive, in the order Apache read them.
    pub(crate) fn globals(&mut self) {
        let mut globals = std::mem::take(&mut self.globals);
        globals.sort_by_key(|(_, d)| d.seq);
        self.trusted_proxies_given = globals
            .iter()
            .any(|(_, d)| d.is("RemoteIPTrustedProxy") || d.is("RemoteIPInternalProxy"));
        for (scope, d) in &globals {
            self.global(d, *scope);
        }
    }

    fn secret_value(&mut self, d: &Directive, env_name: &str, what: &str) -> Value {
        let value = d.args.first().cloned().unwrap_or_default();
        self.secrets.insert(lc(d), value.clone());
        if let Some(name) = env_reference(&value) {
            self.need_env(
                name,
                format!("{what} (Apache read it from ${{{name}}} too)"),
                Some(d.source.clone()),
            );
            return s(&value);
        }
        if value.starts_with("exec:") {
            self.report(
                d,
                format!("the value comes from a command (exec:); the gateway reads it from the environment: put the command's first output line in {env_name} (or use the key's _file form)"),
            );
        }
        self.need_env(
            env_name,
            format!("{what} (the value of {} at {})", d.name, d.source),
            Some(d.source.clone()),
        );
        s(&format!("${{{env_name}}}"))
    }

    fn global(&mut self, d: &Directive, scope: usize) {
        let name = lc(d);
        let a0 = d.args.first().cloned().unwrap_or_default();
        let args = d.args.clone();
        if let Some((_, why)) = APACHE_ONLY.iter().find(|(n, _)| *n == name) {
            self.ignore(d, *why);
            return;
        }
        if args.is_empty() {
            self.report(d, "has no value");
            return;
        }
        match name.as_str() {
            // --- provider
            "oidcprovidermetadataurl" => {
                match a0.strip_suffix("/.well-known/openid-configuration") {
                    Some(issuer) => self.assign("provider", "issuer", s(issuer), d, scope),
                    None => self.report(d, "does not end in /.well-known/openid-configuration; the gateway derives the metadata URL from provider.issuer: set issuer to the OP's issuer"),
                }
            }
            "oidcproviderissuer" => {
                if self.provider.get("issuer").is_some_and(|v| v.as_str() != Some(a0.trim_end_matches('/')) && v.as_str() != Some(&a0)) {
                    self.report(d, "differs from the issuer of OIDCProviderMetadataURL; the gateway requires the metadata's issuer to equal provider.issuer: the metadata URL's was kept");
                } else if self.provider.get("issuer").is_none() {
                    self.assign("provider", "issuer", s(&a0), d, scope);
                } else {
                    self.note("provider", d, "the same issuer");
                }
            }
            "oidcclientid" => self.assign("provider", "client_id", s(&a0), d, scope),
            "oidcclientsecret" => {
                let v = self.secret_value(d, "OIDC_CLIENT_SECRET", "the OIDC client secret");
                self.assign("provider", "client_secret", v, d, scope);
            }
            "oidcredirecturi" => self.assign("provider", "redirect_uri", s(&a0), d, scope),
            "oidcscope" => {
                let scopes: Vec<String> = args.iter().flat_map(|a| a.split_whitespace().map(String::from)).collect();
                let mut scopes = scopes;
                if !scopes.iter().any(|x| x == "openid") {
                    self.report(d, "does not request openid; the gateway always does (added first)");
                    scopes.insert(0, "openid".to_string());
                }
                self.scopes_set = true;
                self.assign("provider", "scopes", list(scopes), d, scope);
            }
            "oidcpkcemethod" => match a0.as_str() {
                "S256" | "plain" | "none" => self.assign("provider", "pkce", s(&a0), d, scope),
                _ => self.report(d, format!("{a0:?} is not supported (S256, plain, none)")),
            },
            "oidcauthrequestparams" => {
                let mut params = toml::map::Map::new();
                let reserved = ["response_type", "client_id", "redirect_uri", "scope", "state", "nonce", "code_challenge", "code_challenge_method"];
                for (k, v) in form_urlencoded::parse(a0.as_bytes()) {
                    if v == "#" {
                        self.report(d, format!("{k}=# copies a request parameter; the gateway sends fixed values only: {k} was left out"));
                    } else if reserved.contains(&k.as_ref()) {
                        self.report(d, format!("{k} is set by the gateway itself and cannot be overridden: left out"));
                    } else {
                        params.insert(k.into_owned(), s(&v));
                    }
                }
                self.assign("provider", "auth_params", Value::Table(params), d, scope);
            }
            "oidcprovidertokenendpointauth" => match a0.as_str() {
                "client_secret_basic" | "client_secret_post" | "client_secret_jwt" => {
                    self.assign("provider", "token_endpoint_auth", s(&a0), d, scope)
                }
                "private_key_jwt" => self.report(d, "set provider.token_endpoint_auth = \"private_key_jwt\" with private_key_file = the PEM key of OIDCPrivateKeyFiles (and private_key_kid = its kid): the key file is read when the configuration is checked, so it is not written here"),
                _ => self.report(d, format!("{a0:?}: the gateway authenticates with client_secret_basic, client_secret_post, client_secret_jwt or private_key_jwt")),
            },
            "oidcidtokenaudvalues" => {
                let auds: Vec<String> = args.iter().filter(|a| *a != "@").cloned().collect();
                self.assign("provider", "trusted_audiences", list(auds), d, scope);
            }
            "oidcjwksrefreshinterval" => match seconds(&a0) {
                Some(n) => self.assign("provider", "jwks_refresh", s(&format!("{n}s")), d, scope),
                None => self.report(d, "expects seconds"),
            },
            "oidchttptimeoutlong" => match seconds(&a0) {
                Some(n) if n > 0 => self.assign("provider", "http_timeout", s(&format!("{n}s")), d, scope),
                _ => self.report(d, "expects seconds"),
            },
            "oidchttptimeoutshort" => self.report(d, "the gateway has one timeout for calls to the OP (provider.http_timeout, from OIDCHTTPTimeoutLong)"),
            "oidcprovideruserinfoendpoint" => {
                if a0.is_empty() {
                    self.assign("provider", "userinfo", Value::Boolean(false), d, scope);
                } else {
                    self.report(d, "the gateway takes the userinfo endpoint from the OP's metadata; a static one cannot be set");
                }
            }
            "oidcprovideruserinfosignedresponsealg" | "oidcuserinfosignedresponsealg" => {
                self.report(d, "signed userinfo is not supported")
            }
            "oidcproviderauthorizationendpoint" | "oidcprovidertokenendpoint" | "oidcproviderjwksuri" | "oidcproviderendsessionendpoint" | "oidcproviderrevocationendpoint" | "oidcprovidercheck_sessioniframe" | "oidcprovidercheckSessioniframe" => {
                self.report(d, "the gateway reads the OP's endpoints from its discovery metadata ({issuer}/.well-known/openid-configuration); a static endpoint cannot be set")
            }
            "oidcsslvalidateserver" | "oidcoauthsslvalidateserver" => match on_off(&a0) {
                Some(true) => self.note("provider", d, "the gateway always validates TLS certificates"),
                _ => self.report(d, "the gateway always validates the OP's TLS certificate; use a certificate the system trusts (or provider.allow_http for plain http in development)"),
            },
            "oidcresponsetype" => {
                if a0 == "code" {
                    self.note("provider", d, "the gateway uses the code flow");
                } else {
                    self.report(d, format!("{a0:?}: the gateway uses the authorization code flow only (response_type=code); register the client for it"));
                }
            }
            "oidcresponsemode" => {
                match a0.as_str() {
                    "query" | "form_post" => self.assign("provider", "response_mode", s(&a0), d, scope),
                    _ => self.report(d, format!("{a0:?}: the gateway receives the authorization response in the query or as form_post")),
                }
            }
            "oidcmetadatadir" => self.metadata_dir(d),
            "oidcdiscoverurl" => self.report(d, "an external discovery page; the gateway shows its own chooser for routes with several providers (route.providers)"),
            "oidccryptopassphrase" => {
                let first = self.secret_value(d, "OIDC_CRYPTO_PASSPHRASE", "the session passphrase");
                if a0.chars().count() < 16 && env_reference(&a0).is_none() && !a0.starts_with("exec:") {
                    self.session.set("allow_weak_passphrase", Value::Boolean(true), format!("{}: shorter than 16 characters", src(d)));
                }
                if let Some(previous) = args.get(1) {
                    self.secrets.insert("oidccryptopassphrase#2".into(), previous.clone());
                    let second = if let Some(name) = env_reference(previous) {
                        self.need_env(name, "the previous session passphrase (Apache read it from the environment too)".to_string(), Some(d.source.clone()));
                        s(previous)
                    } else {
                        self.need_env("OIDC_CRYPTO_PASSPHRASE_PREVIOUS", format!("the previous session passphrase (the second value of {} at {})", d.name, d.source), Some(d.source.clone()));
                        s("${OIDC_CRYPTO_PASSPHRASE_PREVIOUS}")
                    };
                    self.assign("session", "passphrases", Value::Array(vec![first, second]), d, scope);
                    self.session.remove("passphrase");
                } else {
                    self.assign("session", "passphrase", first, d, scope);
                }
            }
            // --- session
            "oidcsessiontype" => {
                let (kind, suffix) = a0.split_once(':').unwrap_or((&a0, ""));
                if !["server-cache", "client-cookie"].contains(&kind) {
                    self.report(d, format!("{kind:?} is not server-cache or client-cookie"));
                    return;
                }
                for part in suffix.split(':').filter(|p| !p.is_empty()) {
                    match part {
                        "persistent" => self.report(d, ":persistent: the gateway's session cookies end with the browser session; sessions still last session.max_duration"),
                        "store_id_token" => {}
                        other => self.report(d, format!(":{other} is not known")),
                    }
                }
                self.session_type = Some((kind.to_string(), d.source.clone()));
                self.globals_session_store(d, scope);
            }
            "oidccachetype" => {
                self.cache_type = Some((a0.clone(), d.source.clone()));
                match a0.as_str() {
                    "shm" | "redis" => self.globals_session_store(d, scope),
                    "memcache" | "file" => self.report(d, format!("{a0}: the gateway keeps server-side sessions in memory (session.store = \"memory\") or Redis (\"redis\")")),
                    other => self.report(d, format!("{other:?} is not a known cache type")),
                }
            }
            "oidccacheshmmax" => match seconds(&a0) {
                Some(n) if n > 0 => self.assign("session", "memory_capacity", Value::Integer(n as i64), d, scope),
                _ => self.report(d, "expects a number of entries"),
            },
            "oidcsessioninactivitytimeout" => match seconds(&a0) {
                Some(n) if n > 0 => self.assign("session", "inactivity_timeout", s(&format!("{n}s")), d, scope),
                _ => self.report(d, "expects seconds greater than 0"),
            },
            "oidcsessionmaxduration" => match seconds(&a0) {
                Some(0) => self.report(d, "0 (follow the ID token's exp) is not supported: session.max_duration is a fixed duration; the default 8h was kept"),
                Some(n) => self.assign("session", "max_duration", s(&format!("{n}s")), d, scope),
                None => self.report(d, "expects seconds"),
            },
            "oidccookie" => self.assign("session", "cookie_name", s(&a0), d, scope),
            "oidcstatecookieprefix" => self.assign("session", "state_cookie_prefix", s(&a0), d, scope),
            "oidccookiedomain" => self.assign("session", "cookie_domain", s(a0.trim_start_matches('.')), d, scope),
            "oidccookiepath" => {
                if a0 == "/" {
                    self.note("session", d, "the gateway's cookies always have Path=/");
                } else {
                    self.report(d, "the gateway's cookies always have Path=/");
                }
            }
            "oidccookiehttponly" => match on_off(&a0) {
                Some(true) => self.note("session", d, "the gateway's cookies are always HttpOnly"),
                _ => self.report(d, "the gateway's cookies are always HttpOnly"),
            },
            "oidccookiesamesite" => {
                let v = match a0.to_ascii_lowercase().as_str() {
                    "on" | "lax" => Some("lax"),
                    "strict" => Some("strict"),
                    "off" | "none" => Some("none"),
                    _ => None,
                };
                match v {
                    Some(v) => self.assign("session", "same_site", s(v), d, scope),
                    None => self.report(d, format!("{a0:?}: the gateway always sets SameSite (lax, strict or none)")),
                }
                if args.len() > 1 && !args[1..].iter().all(|a| a.eq_ignore_ascii_case("lax")) {
                    self.report(d, "the state cookie is always SameSite=Lax in the gateway (it has no form_post response mode, which needed None)");
                }
            }
            "oidcsessioncookiechunksize" => {
                if a0 == "4000" {
                    self.note("session", d, "the gateway chunks at 4000 bytes");
                } else {
                    self.report(d, "the gateway always chunks session cookies at 4000 bytes");
                }
            }
            "oidcstatetimeout" => {
                if a0 == "300" {
                    self.note("session", d, "the gateway's login state lasts 300 s");
                } else {
                    self.report(d, "the gateway's login state always lasts 300 s");
                }
            }
            "oidcstatemaxnumberofcookies" => self.report(d, "the gateway keeps at most 7 login state cookies and drops the oldest (never 503)"),
            "oidcrefreshaccesstokenbeforeexpiry" => match seconds(&a0) {
                Some(n) => {
                    self.assign("session", "refresh_before_expiry", s(&format!("{n}s")), d, scope);
                    if let Some(action) = args.get(1) {
                        if action != "authenticate_on_error" {
                            self.report(d, format!("{action}: a failed refresh in the gateway keeps the old token while it is valid, then sends the user to log in (as authenticate_on_error)"));
                        }
                    }
                }
                None => self.report(d, "expects seconds"),
            },
            // --- headers
            "oidcclaimprefix" => {
                if a0.is_empty() {
                    self.report(d, "an empty claim prefix is not allowed (client headers could not be told from claims)");
                } else {
                    self.assign("headers", "claim_prefix", s(&a0), d, scope);
                }
            }
            "oidcclaimdelimiter" => self.assign("headers", "claim_delimiter", s(&a0), d, scope),
            "oidcpassclaimsas" => {
                self.claims_encoding_set = true;
                match a0.to_ascii_lowercase().as_str() {
                    "headers" | "both" => {}
                    "environment" => self.report(d, "environment variables exist only inside Apache; the gateway passes headers: an app that read OIDC_CLAIM_x from its environment (CGI, PHP $_SERVER) reads HTTP_OIDC_CLAIM_x"),
                    "none" => {
                        self.assign("headers", "pass_id_token", list(Vec::new()), d, scope);
                        self.assign("headers", "pass_userinfo", list(Vec::new()), d, scope);
                        self.assign("headers", "pass_access_token", Value::Boolean(false), d, scope);
                    }
                    other => self.report(d, format!("{other:?} is not none, headers, environment or both")),
                }
                let encoding = args.get(1).map(|e| e.to_ascii_lowercase()).unwrap_or_else(|| "latin1".to_string());
                match encoding.as_str() {
                    "latin1" | "base64url" | "none" => self.assign("headers", "encoding", s(&encoding), d, scope),
                    other => self.report(d, format!("encoding {other:?} is not latin1, base64url or none")),
                }
            }
            "oidcpassidtokenas" => {
                let mut v = Vec::new();
                for a in &args {
                    match a.as_str() {
                        "claims" | "payload" | "serialized" => v.push(a.clone()),
                        "off" => v.clear(),
                        other => self.report(d, format!("{other:?} is not claims, payload, serialized or off")),
                    }
                }
                if args.iter().any(|a| a == "off") {
                    v.clear();
                }
                self.assign("headers", "pass_id_token", list(v), d, scope);
            }
            "oidcpassuserinfoas" => {
                let mut v = Vec::new();
                for a in &args {
                    match a.as_str() {
                        "claims" | "json" => v.push(a.clone()),
                        other if other.starts_with("json:") => self.report(d, format!("{other}: the userinfo JSON is always sent as OIDC_userinfo_json")),
                        other => self.report(d, format!("{other}: the gateway passes userinfo as claims or json only")),
                    }
                }
                self.assign("headers", "pass_userinfo", list(v), d, scope);
            }
            "oidcpassaccesstoken" | "oidcpassrefreshtoken" => match on_off(&a0) {
                Some(on) => {
                    let key = if name == "oidcpassaccesstoken" { "pass_access_token" } else { "pass_refresh_token" };
                    self.assign("headers", key, Value::Boolean(on), d, scope)
                }
                None => self.report(d, "expects On or Off"),
            },
            "oidcremoteuserclaim" | "oidcoauthremoteuserclaim" => {
                let claim = a0.trim_end_matches('@');
                if a0.ends_with('@') {
                    self.report(d, format!("the @ suffix (append the issuer) has no equivalent: remote_user_claim = {claim:?} sends the bare claim"));
                }
                if args.len() > 1 {
                    self.report(d, "a regex (and substitution) on the remote user has no equivalent: the claim is sent as it is");
                }
                self.assign("headers", "remote_user_claim", s(claim), d, scope);
            }
            "oidcauthnheader" => self.assign("headers", "remote_user_header", s(&a0), d, scope),
            "requestheader" => self.request_header(d),
            // --- hooks
            "oidcinfohook" => {
                let known = ["iat", "access_token", "access_token_expires", "id_token", "userinfo", "exp", "timeout", "remote_user", "refresh_token"];
                let mut v = Vec::new();
                for a in &args {
                    if known.contains(&a.as_str()) {
                        v.push(a.clone());
                    } else {
                        self.report(d, format!("member {a:?} is not offered by the gateway's info hook"));
                    }
                }
                self.assign("hooks", "info", list(v), d, scope);
            }
            "oidcredirecturlsallowed" => self.assign("hooks", "redirect_urls_allowed", list(args.clone()), d, scope),
            // --- oauth
            "oidcoauthintrospectionendpoint" => self.assign("oauth", "introspection_endpoint", s(&a0), d, scope),
            "oidcoauthtokenintrospectioninterval" => {
                let v = match a0.trim() {
                    "0" => Some("until-expiry".to_string()),
                    "-1" => Some("off".to_string()),
                    n => seconds(n).map(|n| format!("{n}s")),
                };
                match v {
                    Some(v) => self.assign("oauth", "introspection_cache", s(&v), d, scope),
                    None => self.report(d, "expects seconds, 0 or -1"),
                }
            }
            "oidcoauthaccepttokenas" => {
                let mut v = Vec::new();
                for a in &args {
                    match a.as_str() {
                        "header" | "query" | "post" => v.push(a.clone()),
                        "cookie" => v.push("cookie:PA.global".to_string()),
                        c if c.starts_with("cookie:") => v.push(c.to_string()),
                        other => self.report(d, format!("{other:?}: the gateway accepts tokens as header, query, post or cookie:NAME")),
                    }
                }
                self.assign("oauth", "accept_token_as", list(v), d, scope);
            }
            "oidcoauthverifyjwksuri" => {
                self.assign("oauth", "jwt", Value::Boolean(true), d, scope);
                self.note("oauth", d, "JWT access tokens are verified with the provider's JWKS (from its metadata), not a separate URL");
            }
            "oidcoauthverifyaudience" => {
                let v = if args.len() == 1 { s(&a0) } else { list(args.clone()) };
                self.assign("oauth", "audience", v, d, scope);
            }
            "oidcoauthverifyissuer" => self.note("oauth", d, "JWT access tokens must come from the provider's issuer"),
            "oidcoauthclientid" => {
                if self.provider.get("client_id").is_none() {
                    self.assign("provider", "client_id", s(&a0), d, scope);
                } else if self.provider.get("client_id").and_then(Value::as_str) != Some(a0.as_str()) {
                    self.report(d, "differs from OIDCClientID: the gateway authenticates at the introspection endpoint as provider.client_id; register one client for both, or use oauth.jwt");
                } else {
                    self.note("oauth", d, "the same client as OIDCClientID");
                }
            }
            "oidcoauthclientsecret" => {
                let same = self.secrets.get("oidcclientsecret") == Some(&a0);
                if same {
                    self.secrets.insert(name.clone(), a0.clone());
                    self.note("oauth", d, "the same secret as OIDCClientSecret");
                } else if self.provider.get("client_secret").is_none() {
                    let v = self.secret_value(d, "OIDC_CLIENT_SECRET", "the OAuth client secret");
                    self.assign("provider", "client_secret", v, d, scope);
                } else {
                    self.secrets.insert(name.clone(), a0.clone());
                    self.report(d, "differs from OIDCClientSecret: the gateway authenticates at the introspection endpoint with provider.client_secret");
                }
            }
            "oidcoauthintrospectionendpointauth" => match a0.as_str() {
                "client_secret_basic" | "client_secret_post" => {
                    let current = self.provider.get("token_endpoint_auth").and_then(Value::as_str).unwrap_or("client_secret_basic").to_string();
                    if current == a0 {
                        self.note("oauth", d, "introspection authenticates as the token endpoint does");
                    } else if self.provider.get("token_endpoint_auth").is_none() {
                        self.assign("provider", "token_endpoint_auth", s(&a0), d, scope);
                    } else {
                        self.report(d, "differs from OIDCProviderTokenEndpointAuth: the gateway authenticates the same way at both endpoints");
                    }
                }
                other => self.report(d, format!("{other:?}: the gateway authenticates with client_secret_basic or client_secret_post")),
            },
            "oidcoauthintrospectionendpointmethod" => {
                if a0.eq_ignore_ascii_case("POST") {
                    self.note("oauth", d, "the gateway introspects with POST");
                } else {
                    self.report(d, "the gateway introspects with POST only (RFC 7662)");
                }
            }
            "oidcoauthintrospectiontokenparamname" => {
                if a0 == "token" {
                    self.note("oauth", d, "the gateway sends token=");
                } else {
                    self.report(d, "the gateway sends the token as token= (RFC 7662)");
                }
            }
            "oidcoauthservermetadataurl" => {
                match a0.strip_suffix("/.well-known/oauth-authorization-server").or_else(|| a0.strip_suffix("/.well-known/openid-configuration")) {
                    Some(issuer) if self.provider.get("issuer").is_none() => self.assign("provider", "issuer", s(issuer), d, scope),
                    Some(_) => self.note("provider", d, "the provider's metadata is used"),
                    None => self.report(d, "the gateway reads metadata from {issuer}/.well-known/openid-configuration; set provider.issuer"),
                }
            }
            // --- reverse-proxy awareness
            "oidcxforwardedheaders" => {
                for a in &args {
                    match a.to_ascii_lowercase().as_str() {
                        "x-forwarded-host" | "x-forwarded-proto" => {}
                        "none" => {}
                        other => self.report(d, format!("{other}: the gateway believes X-Forwarded-For, -Proto and -Host (never -Port or Forwarded), and only from server.trusted_proxies")),
                    }
                }
                if !self.trusted_proxies_given && !args.iter().all(|a| a.eq_ignore_ascii_case("none")) {
                    self.report(d, "the gateway believes X-Forwarded-* only from the addresses in server.trusted_proxies: list your proxy's addresses there (RemoteIPTrustedProxy/RemoteIPInternalProxy would have been mapped)");
                } else {
                    self.note("server", d, "X-Forwarded-* are believed from server.trusted_proxies");
                }
            }
            "remoteiptrustedproxy" | "remoteipinternalproxy" => {
                let mut current: Vec<String> = self.server.get("trusted_proxies").and_then(Value::as_array).map(|a| a.iter().filter_map(|v| v.as_str().map(String::from)).collect()).unwrap_or_default();
                for a in &args {
                    if a.parse::<ipnet::IpNet>().is_ok() || a.parse::<std::net::IpAddr>().is_ok() {
                        if !current.contains(a) {
                            current.push(a.clone());
                        }
                    } else {
                        self.report(d, format!("{a:?} is not an IP address or CIDR"));
                    }
                }
                self.server.set("trusted_proxies", list(current), src(d));
            }
            "remoteipheader" => {
                if a0.eq_ignore_ascii_case("X-Forwarded-For") {
                    self.note("server", d, "the gateway reads X-Forwarded-For from server.trusted_proxies");
                } else {
                    self.report(d, "the gateway reads the client address from X-Forwarded-For only");
                }
            }
            "proxytimeout" => match seconds(&a0) {
                Some(n) if n > 0 => self.assign("server", "upstream_timeout", s(&format!("{n}s")), d, scope),
                _ => self.report(d, "expects seconds"),
            },
            "proxyrequests" => match on_off(&a0) {
                Some(false) => self.ignore(d, "the gateway is never a forward proxy"),
                _ => self.report(d, "the gateway is never a forward proxy"),
            },
            "listen" => self.report(d, "the gateway's listeners are server.listen (default 127.0.0.1:8080): set the address it should take over"),
            "sslcertificatefile" | "sslcertificatechainfile" => self.report(d, "set server.tls_cert_file to this file (the chain, leaf first) to terminate TLS in the gateway"),
            "sslcertificatekeyfile" => self.report(d, "set server.tls_key_file to this file to terminate TLS in the gateway"),
            "redirect" | "redirectmatch" | "redirectpermanent" | "rewriterule" | "rewritecond" | "rewriteengine" => self.report(d, "the gateway does not rewrite or redirect requests; for http -> https use server.redirect_http_listen"),
            "header" => self.report(d, "response headers are not set by the gateway; set them in the app"),
            "oidcunautzaction" | "oidcpathscope" | "oidcpathauthrequestparams" => unreachable!("per-directory"),
            "oidcrediscacheserver" => self.redis_server = Some(d.clone()),
            "oidcrediscachedatabase" => match seconds(&a0) {
                Some(_) => self.redis_database = Some(d.clone()),
                None => self.report(d, "expects a database number"),
            },
            "oidcrediscacheusername" => self.assign("redis", "username", s(&a0), d, scope),
            "oidcrediscachepassword" => {
                let v = self.secret_value(d, "OIDC_REDIS_PASSWORD", "the Redis password");
                self.assign("redis", "password", v, d, scope);
            }
            "oidcrediscachetimeout" | "oidcrediscacheconnecttimeout" => match seconds(&a0) {
                Some(n) if n > 0 => {
                    let longer = self.redis.get("timeout").and_then(Value::as_str).and_then(|v| seconds(v.trim_end_matches('s'))).is_some_and(|old| old >= n);
                    if longer {
                        self.note("redis", d, "a shorter bound than the one kept (redis.timeout bounds every call)");
                    } else {
                        self.assign("redis", "timeout", s(&format!("{n}s")), d, scope);
                    }
                }
                _ => self.report(d, "expects seconds greater than 0"),
            },
            _ if name.starts_with("oidc") => {
                // The value is never shown: an unknown directive may hold a secret.
                self.report(d, "no gateway equivalent; check whether the behaviour it sets matters for this site (docs/behaviour.md)");
            }
            _ => self.report(d, "not an OIDC or proxy directive the importer knows; check that the site does not need it"),
        }
    }

    /// `OIDCSessionType` and `OIDCCacheType` together choose `session.store`.
    fn globals_session_store(&mut self, d: &Directive, scope: usize) {
        let kind = self
            .session_type
            .as_ref()
            .map(|(k, _)| k.as_str())
            .unwrap_or("server-cache");
        let store = if kind == "client-cookie" {
            "cookie"
        } else {
            match self.cache_type.as_ref().map(|(c, _)| c.as_str()) {
                Some("redis") => "redis",
                _ => "memory",
            }
        };
        self.assign("session", "store", s(store), d, scope);
        if store == "redis" {
            self.redis_table();
        }
    }

    /// Notes that `[redis]` is needed; its keys come from the OIDCRedisCache* directives
    /// (`finish_redis`).
    fn redis_table(&mut self) {
        self.redis_needed = true;
    }

    /// `[redis] url` from OIDCRedisCacheServer and OIDCRedisCacheDatabase.
    pub(crate) fn finish_redis(&mut self) {
        if !self.redis_needed {
            if let Some(d) = self.redis_server.clone() {
                self.report(&d, "OIDCCacheType is not redis: not used");
            }
            return;
        }
        let (server, comment) = match &self.redis_server {
            Some(d) => (d.args.first().cloned().unwrap_or_default(), src(d)),
            None => (
                "127.0.0.1:6379".to_string(),
                "mod_auth_openidc's default server".to_string(),
            ),
        };
        let server = if server.contains(':') {
            server
        } else {
            format!("{server}:6379")
        };
        let (db, db_comment) = match &self.redis_database {
            Some(d) => (d.args.first().cloned().unwrap_or_default(), Some(src(d))),
            None => ("0".to_string(), None),
        };
        let mut comments = vec![comment];
        comments.extend(db_comment);
        self.redis.set(
            "url",
            s(&format!("redis://{server}/{db}")),
            comments.join("; "),
        );
    }

    /// `RequestHeader set NAME VALUE` where VALUE is one claim, the remote user or the access
    /// token -> `[[headers.set]]` (or `remote_user_header`).
    fn request_header(&mut self, d: &Directive) {
        let op = d
            .args
            .first()
            .map(|a| a.to_ascii_lowercase())
            .unwrap_or_default();
        let (Some(header), Some(value)) = (d.args.get(1), d.args.get(2)) else {
            self.report(d, "only RequestHeader set NAME VALUE is mapped");
            return;
        };
        if op != "set" || d.args.len() > 3 {
            self.report(d, "only RequestHeader set NAME VALUE (without a condition) is mapped; the gateway removes client headers that look like its own");
            return;
        }
        let prefix = self
            .headers
            .get("claim_prefix")
            .and_then(Value::as_str)
            .unwrap_or("OIDC_CLAIM_")
            .to_string();
        let inner = value
            .strip_prefix("%{")
            .and_then(|v| v.strip_suffix("}e").or_else(|| v.strip_suffix("}s")));
        let Some(var) = inner else {
            self.report(d, "the value is not one %{VAR}e; write a [[headers.set]] value template ({sub}, {claim:NAME}, {access_token})");
            return;
        };
        let var = var.strip_prefix("HTTP_").unwrap_or(var);
        let mut t = Table::new("[[headers.set]]");
        t.set("name", s(header), src(d));
        if var == "REMOTE_USER" {
            if self.headers.get("remote_user_header").is_none() {
                self.headers.set("remote_user_header", s(header), src(d));
            } else {
                self.report(
                    d,
                    "a second remote-user header; the gateway sends one (remote_user_header)",
                );
            }
            return;
        } else if var == "OIDC_access_token" {
            t.set("value", s("{access_token}"), src(d));
        } else if let Some(claim) = var.strip_prefix(&prefix) {
            t.set("claim", s(claim), src(d));
        } else {
            self.report(
                d,
                format!("%{{{var}}} is not a claim, REMOTE_USER or OIDC_access_token"),
            );
            return;
        }
        self.header_sets.push(t);
    }
}

// ----- OIDCMetadataDir ------------------------------------------------------------------

impl Mapper {
    fn metadata_dir(&mut self, d: &Directive) {
        let dir = d.dir.join(d.args.first().cloned().unwrap_or_default());
        let Ok(entries) = std::fs::read_dir(&dir) else {
            self.report(d, format!("{} cannot be read here: write one [[provider]] entry (name, issuer, client_id, client_secret) per OP of the directory", dir.display()));
            return;
        };
        let mut names: Vec<String> = entries
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".provider"))
            .collect();
        names.sort();
        if names.is_empty() {
            self.report(d, "holds no .provider files (dynamic registration and discovery at run time are not supported): write one [[provider]] entry per OP");
            return;
        }
        for file in names {
            let stem = file.trim_end_matches(".provider").to_string();
            self.metadata_provider(d, &dir, &stem);
        }
    }

    fn metadata_provider(&mut self, d: &Directive, dir: &std::path::Path, stem: &str) {
        let read = |ext: &str| -> Option<serde_json::Value> {
            let text = std::fs::read_to_string(dir.join(format!("{stem}.{ext}"))).ok()?;
            serde_json::from_str(&text).ok()
        };
        let label = format!("{stem}.provider");
        let Some(meta) = read("provider") else {
            self.report(
                d,
                format!("{label} is not readable JSON: that OP was not mapped"),
            );
            return;
        };
        let Some(issuer) = meta
            .get("issuer")
            .and_then(|v| v.as_str())
            .map(String::from)
        else {
            self.report(d, format!("{label} has no issuer: that OP was not mapped"));
            return;
        };
        let Some(client) = read("client") else {
            self.report(d, format!("{stem}.client is missing or not JSON (dynamic client registration is not supported): register a client at {issuer} and add a [[provider]] for it"));
            return;
        };
        let host = url::Url::parse(&issuer)
            .ok()
            .and_then(|u| u.host_str().map(String::from))
            .unwrap_or_else(|| "provider".to_string());
        let mut name: String = host
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                    c
                } else {
                    '-'
                }
            })
            .take(64)
            .collect();
        let taken = |n: &str, m: &Mapper| {
            m.extra_providers
                .iter()
                .any(|p| p.name.as_deref() == Some(n))
        };
        let mut i = 2;
        while taken(&name, self) {
            name = format!("{host}-{i}");
            i += 1;
        }
        let origin = format!("{}, {}: {stem}", d.name, d.source);
        let mut t = Table::new("[[provider]]");
        t.set("name", s(&name), origin.clone());
        t.set("issuer", s(&issuer), format!("{origin}.provider"));
        match client.get("client_id").and_then(|v| v.as_str()) {
            Some(id) => t.set("client_id", s(id), format!("{origin}.client")),
            None => {
                self.report(
                    d,
                    format!("{stem}.client has no client_id: that OP was not mapped"),
                );
                return;
            }
        }
        if client
            .get("client_secret")
            .and_then(|v| v.as_str())
            .is_some()
        {
            let var = format!("OIDC_CLIENT_SECRET_{}", env_suffix(&name));
            t.set(
                "client_secret",
                s(&format!("${{{var}}}")),
                format!("{origin}.client"),
            );
            self.need_env(
                &var,
                format!("the client secret in {stem}.client"),
                Some(d.source.clone()),
            );
        }
        if let Some(method) = client
            .get("token_endpoint_auth_method")
            .and_then(|v| v.as_str())
        {
            match method {
                "client_secret_basic" | "client_secret_post" => t.set("token_endpoint_auth", s(method), format!("{origin}.client")),
                other => self.report(d, format!("{stem}.client: token_endpoint_auth_method {other:?} is not supported (client_secret_basic, client_secret_post)")),
            }
        }
        if let Some(conf) = read("conf") {
            if let Some(obj) = conf.as_object() {
                for (k, v) in obj {
                    match (k.as_str(), v.as_str()) {
                        ("scope", Some(scope)) => {
                            let mut scopes: Vec<String> =
                                scope.split_whitespace().map(String::from).collect();
                            if !scopes.iter().any(|x| x == "openid") {
                                scopes.insert(0, "openid".into());
                            }
                            t.set("scopes", list(scopes), format!("{origin}.conf"));
                        }
                        ("pkce_method", Some(m @ ("S256" | "plain" | "none"))) => {
                            t.set("pkce", s(m), format!("{origin}.conf"))
                        }
                        ("auth_request_params", Some(p)) => {
                            let mut params = toml::map::Map::new();
                            for (pk, pv) in form_urlencoded::parse(p.as_bytes()) {
                                params.insert(pk.into_owned(), s(&pv));
                            }
                            t.set(
                                "auth_params",
                                Value::Table(params),
                                format!("{origin}.conf"),
                            );
                        }
                        (
                            "token_endpoint_auth",
                            Some(m @ ("client_secret_basic" | "client_secret_post")),
                        ) => t.set("token_endpoint_auth", s(m), format!("{origin}.conf")),
                        _ => self.report(
                            d,
                            format!("{stem}.conf: {k:?} has no per-provider equivalent"),
                        ),
                    }
                }
            }
        }
        self.extra_providers.push(ProviderOut {
            table: t,
            name: Some(name),
        });
    }
}

// ----- routes -----------------------------------------------------------------------------

/// The per-directory settings that apply to one route path.
#[derive(Default)]
struct Merged {
    auth_type: Option<Directive>,
    require: Option<(Vec<Req>, Source, usize)>,
    unauth: Option<Directive>,
    preserve_post: Option<Directive>,
    others: Vec<Directive>,
}

impl Mapper {
    fn applicable(&self, scope: usize, path: &str, upstream: &str) -> Vec<usize> {
        let mut ids: Vec<usize> = (0..self.areas.len())
            .filter(|&i| {
                let a = &self.areas[i];
                (a.scope == 0 || a.scope == scope)
                    && match &a.kind {
                        AreaKind::Base => true,
                        AreaKind::Prefix(p) => covers(p, path),
                        AreaKind::Upstream(u) => {
                            u.is_empty() || upstream.starts_with(u.trim_end_matches('/'))
                        }
                    }
            })
            .collect();
        // Apache merges the server's own level, then <Directory>/<Proxy>, then <Location>,
        // each in the order read (the main server's before a virtual host's).
        ids.sort_by_key(|&i| {
            let a = &self.areas[i];
            let rank = match a.kind {
                AreaKind::Base => 0,
                AreaKind::Upstream(_) => 1,
                AreaKind::Prefix(_) => 2,
            };
            (rank, a.scope != 0, a.seq)
        });
        ids
    }

    fn merge(&self, ids: &[usize]) -> Merged {
        let mut m = Merged::default();
        for &i in ids {
            let a = &self.areas[i];
            for d in &a.directives {
                match lc(d).as_str() {
                    "authtype" => m.auth_type = Some(d.clone()),
                    "oidcunauthaction" => m.unauth = Some(d.clone()),
                    "oidcpreservepost" => m.preserve_post = Some(d.clone()),
                    _ => m.others.push(d.clone()),
                }
            }
            if !a.require.is_empty() {
                let (source, seq) = first_source(&a.require[0]);
                m.require = Some((a.require.clone(), source, seq));
            }
        }
        m
    }

    fn hosts(&self, scope: usize) -> Vec<(String, Source)> {
        self.vhosts[scope].names.clone()
    }

    /// Writes the routes: one per ProxyPass, and one per protecting `<Location>` nested in
    /// a proxied path.
    pub(crate) fn build_routes(&mut self, providers: &[String]) {
        let mut reported_dirs: Vec<usize> = Vec::new();
        let mut seen: Vec<(Vec<String>, String)> = Vec::new();
        for scope in 0..self.vhosts.len() {
            let maps: Vec<Mapping> = self
                .mappings
                .iter()
                .filter(|m| m.scope == scope)
                .cloned()
                .collect();
            let mut candidates: Vec<(String, Option<Mapping>)> = Vec::new();
            for m in &maps {
                candidates.push((m.path.clone(), Some(m.clone())));
            }
            let locations: Vec<(usize, String)> = self
                .areas
                .iter()
                .enumerate()
                .filter(|(_, a)| a.scope == scope)
                .filter_map(|(i, a)| match &a.kind {
                    AreaKind::Prefix(p) => Some((i, p.clone())),
                    _ => None,
                })
                .collect();
            // Locations of the main server apply in every virtual host: consider them for
            // each scope that has mappings.
            let shared: Vec<(usize, String)> = if scope != 0 {
                self.areas
                    .iter()
                    .enumerate()
                    .filter(|(_, a)| a.scope == 0)
                    .filter_map(|(i, a)| match &a.kind {
                        AreaKind::Prefix(p) => Some((i, p.clone())),
                        _ => None,
                    })
                    .collect()
            } else {
                Vec::new()
            };
            for (i, p) in locations.iter().chain(shared.iter()) {
                let a = &self.areas[*i];
                let protects = !a.directives.is_empty() || !a.require.is_empty();
                if !protects
                    || candidates
                        .iter()
                        .any(|(c, _)| c.trim_end_matches('/') == p.trim_end_matches('/'))
                {
                    continue;
                }
                let inside = maps.iter().any(|m| covers(&m.path, p));
                let around = maps.iter().any(|m| covers(p, &m.path));
                if inside {
                    candidates.push((p.clone(), None));
                } else if !around
                    && a.scope == scope
                    && !reported_dirs.contains(i)
                    && !self.failed_paths.iter().any(|f| covers(f, p))
                {
                    reported_dirs.push(*i);
                    let first = a
                        .directives
                        .first()
                        .map(|d| (d.source.clone(), d.seq, d.name.clone()));
                    let (source, seq, name) = first.unwrap_or_else(|| {
                        let (s, q) = first_source(&a.require[0]);
                        (s, q, "Require".to_string())
                    });
                    self.report_at(&source, seq, &name, format!("protects {p}, which Apache serves itself (no ProxyPass covers it): the gateway only proxies; serve that content from an upstream and add a ProxyPass"));
                }
            }
            candidates.sort_by(|a, b| a.0.cmp(&b.0));
            for (path, mapping) in candidates {
                let covering = mapping.or_else(|| {
                    maps.iter()
                        .filter(|m| covers(&m.path, &path))
                        .max_by_key(|m| m.path.trim_end_matches('/').len())
                        .cloned()
                });
                let Some(m) = covering else { continue };
                let hosts = self.hosts(scope);
                let host_names: Vec<String> =
                    hosts.iter().filter_map(|(h, _)| host_name(h)).collect();
                let key = (host_names.clone(), path.trim_end_matches('/').to_string());
                if seen.contains(&key) {
                    self.report(
                        &m.directive,
                        format!(
                            "{path} is mapped twice for the same hosts; only the first was written"
                        ),
                    );
                    continue;
                }
                seen.push(key);
                self.route(scope, &path, &m, &hosts, providers);
            }
        }
    }

    fn route(
        &mut self,
        scope: usize,
        path: &str,
        m: &Mapping,
        hosts: &[(String, Source)],
        providers: &[String],
    ) {
        let upstream = match &m.target {
            Target::Upstream(u) => u.clone(),
            Target::Excluded => {
                let redirect = self
                    .provider
                    .get("redirect_uri")
                    .and_then(Value::as_str)
                    .map(|r| {
                        url::Url::parse(r)
                            .map(|u| u.path().to_string())
                            .unwrap_or_else(|_| r.to_string())
                    });
                if redirect.as_deref() == Some(path) {
                    self.ignore(
                        &m.directive,
                        "the gateway answers the redirect URI itself; no exception is needed",
                    );
                } else {
                    self.report(&m.directive, format!("excludes {path} from proxying (Apache serves it itself); the gateway cannot serve it: give it an upstream"));
                }
                return;
            }
        };
        let ids = self.applicable(scope, path, &upstream);
        let merged = self.merge(&ids);
        let mut t = Table::new("[[route]]");
        let mut route_path = path.trim_end_matches('/').to_string();
        if route_path.is_empty() {
            route_path = "/".to_string();
        }
        t.set("path", s(&route_path), src(&m.directive));
        let mut host_values = Vec::new();
        let mut host_comments = Vec::new();
        for (h, source) in hosts {
            match host_name(h) {
                Some(v) => {
                    if !host_values.contains(&v) {
                        host_values.push(v);
                    }
                    let c = format!("ServerName/ServerAlias, {source}");
                    if !host_comments.contains(&c) {
                        host_comments.push(c);
                    }
                }
                None => self.report_at(
                    source,
                    0,
                    "ServerAlias",
                    format!(
                        "{h:?} is not a host name or *.domain; the route does not answer for it"
                    ),
                ),
            }
        }
        if !host_values.is_empty() {
            let v = if host_values.len() == 1 {
                s(&host_values[0])
            } else {
                list(host_values)
            };
            t.set("host", v, host_comments.join("; "));
        }
        t.set("upstream", s(&upstream), src(&m.directive));
        let auth = match &merged.auth_type {
            None => "none",
            Some(d) => match d.args.first().map(|a| a.to_ascii_lowercase()).as_deref() {
                Some("openid-connect") => "openid-connect",
                Some("oauth20") => "oauth20",
                Some("auth-openidc") => {
                    self.report(d, "mixed mode (a bearer token, else a login) has no single-route equivalent: written as openid-connect; add an oauth20 route for the API clients' paths");
                    "openid-connect"
                }
                Some("none") => "none",
                _ => {
                    self.report(d, "not an OIDC AuthType: the route is written with auth = \"openid-connect\"; check that this is what the path needs");
                    "openid-connect"
                }
            },
        };
        let authz = merged.require.as_ref().map(|(reqs, _, _)| any_of(reqs));
        let mut auth = auth;
        let mut rules: Vec<String> = Vec::new();
        let mut rule_comment = None;
        match authz {
            Some(Ok(Authz::Anyone)) => {
                auth = "none";
                if let Some((_, source, _)) = &merged.require {
                    rule_comment = Some(format!("Require all granted, {source}"));
                }
            }
            Some(Ok(Authz::ValidUser)) => {
                if let Some((_, source, _)) = &merged.require {
                    rule_comment = Some(format!("Require, {source}"));
                }
            }
            Some(Ok(Authz::Claims(r))) => {
                rules = r;
                if let Some((_, source, _)) = &merged.require {
                    rule_comment = Some(format!("Require, {source}"));
                }
            }
            Some(Err((source, seq, name, why))) => {
                self.report_at(
                    &source,
                    seq,
                    &name,
                    format!("{why}; until then the route refuses everyone (403)"),
                );
                rules = vec![FAIL_CLOSED_RULE.to_string()];
                rule_comment = Some(format!(
                    "{name}, {source}: not mapped, refuses everyone (see the report)"
                ));
            }
            None => {
                if auth != "none" {
                    if let Some(d) = &merged.auth_type {
                        self.report(d, format!("no Require applies to {route_path}: Apache would not authenticate there, the gateway does (auth = {auth:?}); add Require valid-user, or AuthType None if the path is public"));
                    }
                }
            }
        }
        let auth_comment = match &merged.auth_type {
            Some(d) => src(d),
            None => "no AuthType: not protected".to_string(),
        };
        let auth_comment = match (&rule_comment, auth) {
            (Some(c), "none") if c.starts_with("Require all granted") => c.clone(),
            _ => auth_comment,
        };
        t.set("auth", s(auth), auth_comment);
        if !rules.is_empty() && auth != "none" {
            t.set(
                "require_claims",
                list(rules),
                rule_comment.unwrap_or_default(),
            );
        }
        let mut unauth_value = "auth".to_string();
        if let Some(d) = &merged.unauth {
            let v = d
                .args
                .first()
                .map(|a| a.to_ascii_lowercase())
                .unwrap_or_default();
            if d.args.len() > 1 {
                self.report(d, "an expression choosing which requests get this action: the gateway detects non-browser requests itself (docs/behaviour.md §4.1)");
            }
            match v.as_str() {
                "auth" | "401" | "pass" if auth != "none" => {
                    unauth_value = v.clone();
                    t.set("unauth_action", s(&v), src(d));
                }
                "auth" | "401" | "pass" => {}
                "407" | "410" => self.report(
                    d,
                    format!("{v}: the gateway answers 401 (unauth_action = \"401\") or logs in"),
                ),
                _ => self.report(d, "not auth, pass, 401, 407 or 410"),
            }
        }
        if let Some(d) = &merged.preserve_post {
            match d.args.first().and_then(|a| on_off(a)) {
                Some(true) if auth == "openid-connect" && unauth_value == "auth" => {
                    if providers.len() > 1 {
                        self.report(d, "the gateway keeps form posts only with one provider");
                    } else {
                        t.set("preserve_post", Value::Boolean(true), src(d));
                    }
                }
                Some(true) => self.report(d, format!("{route_path} does not log browsers in (auth = {auth:?}, unauth_action = {unauth_value:?}): no form is kept there")),
                Some(false) => {}
                None => self.report(d, "expects On or Off"),
            }
        }
        for d in &merged.others {
            match lc(d).as_str() {
                "oidcunautzaction" => {
                    if d.args.first().map(String::as_str) == Some("403") {
                        // The gateway's answer when a claim rule fails.
                    } else {
                        self.report(d, "the gateway answers 403 when claim rules fail");
                    }
                }
                _ => self.report(d, "per-path scopes and authorization parameters have no gateway equivalent (one set per provider)"),
            }
        }
        let preserve_host = self.vhosts[scope]
            .preserve_host
            .clone()
            .or_else(|| self.vhosts[0].preserve_host.clone());
        if let Some((true, source)) = preserve_host {
            t.set(
                "preserve_host",
                Value::Boolean(true),
                format!("ProxyPreserveHost, {source}"),
            );
        }
        if auth != "none" && providers.len() > 1 {
            t.set(
                "providers",
                list(providers.to_vec()),
                "OIDCMetadataDir: any of its providers".to_string(),
            );
        }
        self.routes.push(t);
    }
}

fn first_source(req: &Req) -> (Source, usize) {
    match req {
        Req::Line(d) => (d.source.clone(), d.seq),
        Req::Refused(s, q, _, _) => (s.clone(), *q),
        Req::All(items) | Req::Any(items) => items.first().map(first_source).unwrap_or((
            Source {
                file: String::new(),
                line: 0,
            },
            0,
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regexes_that_are_prefixes() {
        assert_eq!(regex_prefix("^/api").as_deref(), Some("/api"));
        assert_eq!(regex_prefix("^/api/").as_deref(), Some("/api"));
        assert_eq!(regex_prefix("^/api(/.*)?$").as_deref(), Some("/api"));
        assert_eq!(regex_prefix("^/v1\\.0/x").as_deref(), Some("/v1.0/x"));
        assert_eq!(regex_prefix("/api"), None);
        assert_eq!(regex_prefix("^/api/.*\\.php$"), None);
        assert_eq!(regex_prefix("^/(a|b)"), None);
    }

    #[test]
    fn upstreams_keep_the_path_or_say_why_not() {
        assert_eq!(
            upstream_for("/app", "http://b:8080/app").unwrap(),
            "http://b:8080"
        );
        assert_eq!(
            upstream_for("/", "http://b:8080/").unwrap(),
            "http://b:8080"
        );
        assert_eq!(
            upstream_for("/app/", "https://b/base/app/").unwrap(),
            "https://b/base"
        );
        assert_eq!(upstream_for("/ws", "ws://b/ws").unwrap(), "http://b");
        assert!(upstream_for("/app", "http://b/").is_err());
        assert!(upstream_for("/app", "balancer://cluster/app").is_err());
    }

    #[test]
    fn or_of_one_claim_becomes_one_regex() {
        let sets = vec![vec!["groups:a.b".to_string()], vec!["groups:c".to_string()]];
        assert_eq!(
            or_of_rules(sets),
            Some(Authz::Claims(vec!["groups~^(a\\.b|c)$".to_string()]))
        );
        let mixed = vec![vec!["groups:a".to_string()], vec!["email:c".to_string()]];
        assert_eq!(or_of_rules(mixed), None);
    }

    #[test]
    fn covers_on_segment_boundaries() {
        assert!(covers("/", "/x"));
        assert!(covers("/app", "/app/x"));
        assert!(covers("/app/", "/app"));
        assert!(!covers("/app", "/apps"));
    }
}
