//! HTTP throughput over loopback: a bare route against the same route behind both otac layers (and against a
//! route that does the same with hand-written `jsonwebtoken` calls), on axum and on actix-web. A plain `main` (not
//! criterion): a bounded load generator with a fixed request count.
//!
//! ```text
//! cargo bench --bench http
//! OTAC_BENCH_HTTP_REQUESTS=40000 cargo bench --bench http   # requests per variant (default 20000)
//! ```
//!
//! Servers, each on 127.0.0.1 with one worker thread (axum on a one-worker Tokio runtime, actix-web with
//! `workers(1)`), four routes each:
//!
//! - `/bare`: the handler alone (`200 ok`).
//! - `/jsonwebtoken`: what a user would write without otac: the handler decodes and validates the request's token
//!   with bare `jsonwebtoken` (HS256; `aud`, `iss`, `exp`, `nbf`), encodes one for the next step (fresh random
//!   `jti`) and puts it into the response header. No one-time use.
//! - `/memory`: the same handler behind `RequireOtacLayer` + `IssueOtacLayer` of step `verify` of a workflow with a
//!   `MemoryStore`: every request verifies its code, spends it and gets the code for the next step.
//! - `/stateless`: the same with `Replay::stateless()` (no store; expiry alone).
//!
//! Every request of an otac route carries a fresh code for `verify`, minted before the timed part by the
//! workflow's `Issuer` of the entry step (the code the entry step's issue layer would hand out); every request of
//! `/jsonwebtoken` a fresh token of the same claims. Caller binding none, HS256.
//!
//! The client is raw hyper 1 HTTP/1.1 on a current-thread Tokio runtime on the main thread: 32 keep-alive
//! connections, each sending its next request when the last answer is read in full. Every answer must be `200`,
//! with a code on all but the bare routes. The variants run in rounds, each round every variant once with an equal share
//! of the requests, in an order rotated per round (A/B/A/B), after an untimed warm-up round; requests/s is the
//! total over all rounds. One variant run is limited to 60 s and the whole benchmark to 10 minutes.
//!
//! Besides requests/s and the ratio to the bare route of the same framework, it prints the CPU time per request
//! of the server threads and of the client thread (`/proc/self/task/*/schedstat`): with a trivial handler the
//! client and the server share the two cores, so any server work per request lowers the throughput ratio well
//! beyond its share of the server's CPU time.

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::http;
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use otac::{Binding, IssueContext, Issuer, Key, KeySet, MemoryStore, Replay, Step, Workflow};

const CONCURRENCY: usize = 32;
/// Variants: 2 frameworks x 4 routes.
const PER_ROUND: usize = 8;
const ROUNDS: usize = 10;
const WARM_UP: usize = 2_000;
const VARIANT_LIMIT: Duration = Duration::from_secs(60);
const TOTAL_LIMIT: Duration = Duration::from_secs(600);
const SECRET: &[u8] = b"a benchmark secret of at least thirty-two bytes";

fn workflow(replay: Replay) -> Workflow {
    Workflow::builder("onboarding")
        .issuer("accounts.example")
        .keys(KeySet::new(Key::hs256(SECRET).expect("key")))
        .binding(Binding::none())
        .replay(replay)
        .step(Step::new("start").entry().then("verify"))
        .step(Step::new("verify").then("done"))
        .step(Step::new("done"))
        .build()
        .expect("benchmark workflow")
}

/// The claims of the hand-written tokens: the claim set of an otac code.
#[derive(serde::Serialize, serde::Deserialize)]
struct JwtClaims {
    iss: String,
    aud: String,
    exp: u64,
    iat: u64,
    nbf: u64,
    jti: String,
    wf: String,
    run: String,
    stp: String,
    rat: u64,
}

/// Bare `jsonwebtoken` HS256 with the validation an otac code gets.
struct Jwt {
    header: jsonwebtoken::Header,
    encoding: jsonwebtoken::EncodingKey,
    decoding: jsonwebtoken::DecodingKey,
    validation: jsonwebtoken::Validation,
}

impl Jwt {
    fn new() -> Self {
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
        header.typ = Some("otac+jwt".to_owned());
        header.kid = Some("bench".to_owned());
        let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
        validation.set_audience(&["verify"]);
        validation.set_issuer(&["accounts.example"]);
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp", "aud", "iss"]);
        Self {
            header,
            encoding: jsonwebtoken::EncodingKey::from_secret(SECRET).expect("key"),
            decoding: jsonwebtoken::DecodingKey::from_secret(SECRET).expect("key"),
            validation,
        }
    }

    /// A token for step `aud` of run `run`, issued by step `stp`.
    fn mint(&self, aud: &str, stp: &str, run: String) -> String {
        use base64::Engine as _;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let mut jti = [0u8; 16];
        getrandom::fill(&mut jti).expect("system randomness");
        let claims = JwtClaims {
            iss: "accounts.example".to_owned(),
            aud: aud.to_owned(),
            exp: now + 300,
            iat: now,
            nbf: now,
            jti: base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(jti),
            wf: "onboarding".to_owned(),
            run,
            stp: stp.to_owned(),
            rat: now,
        };
        jsonwebtoken::encode(&self.header, &claims, &self.encoding).expect("encode")
    }

    /// The handler's work: the request's token checked, the next one made; `None` if the token is not valid.
    fn verify_and_issue(&self, token: Option<&[u8]>) -> Option<String> {
        let claims = jsonwebtoken::decode::<JwtClaims>(token?, &self.decoding, &self.validation)
            .ok()?
            .claims;
        Some(self.mint("done", "verify", claims.run))
    }
}

/// The two otac workflows of a server: one with a memory store, one stateless.
#[derive(Clone)]
struct Workflows {
    memory: Workflow,
    stateless: Workflow,
}

impl Workflows {
    fn new() -> Self {
        Self {
            memory: workflow(Replay::store(MemoryStore::default())),
            stateless: workflow(Replay::stateless()),
        }
    }
}

// --- servers -------------------------------------------------------------------------------------------------

async fn axum_handler() -> &'static str {
    "ok"
}

/// The axum server in threads of its own; stops when the returned sender is dropped or fires.
fn axum_server(
    wfs: &Workflows,
) -> (
    SocketAddr,
    tokio::sync::oneshot::Sender<()>,
    std::thread::JoinHandle<()>,
) {
    use axum::http::HeaderMap;
    use axum::response::IntoResponse;
    use axum::routing::get;
    use otac::{IssueOtacLayer, RequireOtacLayer};
    let jwt = Arc::new(Jwt::new());
    let header = wfs.memory.header().clone();
    let hand_written = move |headers: HeaderMap| {
        let next = jwt.verify_and_issue(headers.get(&header).map(|v| v.as_bytes()));
        let response = match next {
            Some(token) => ([(header.clone(), token)], "ok").into_response(),
            None => http::StatusCode::UNAUTHORIZED.into_response(),
        };
        std::future::ready(response)
    };
    let route = |wf: &Workflow| {
        get(axum_handler)
            .layer(IssueOtacLayer::new(wf, "verify"))
            .route_layer(RequireOtacLayer::new(wf, "verify"))
    };
    let app = axum::Router::new()
        .route("/bare", get(axum_handler))
        .route("/jsonwebtoken", get(hand_written))
        .route("/memory", route(&wfs.memory))
        .route("/stateless", route(&wfs.stateless));
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
    listener.set_nonblocking(true).expect("nonblocking");
    let addr = listener.local_addr().expect("local address");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("server runtime");
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stopped.await;
                })
                .await
                .expect("axum server");
        });
    });
    (addr, stop, thread)
}

async fn actix_handler() -> &'static str {
    "ok"
}

async fn actix_hand_written(
    req: actix_web::HttpRequest,
    jwt: actix_web::web::Data<Jwt>,
) -> actix_web::HttpResponse {
    let token = req
        .headers()
        .get(otac::DEFAULT_HEADER)
        .map(|v| v.as_bytes());
    match jwt.verify_and_issue(token) {
        Some(next) => actix_web::HttpResponse::Ok()
            .insert_header((otac::DEFAULT_HEADER, next))
            .body("ok"),
        None => actix_web::HttpResponse::Unauthorized().finish(),
    }
}

fn actix_server(
    wfs: &Workflows,
) -> (
    SocketAddr,
    actix_web::dev::ServerHandle,
    std::thread::JoinHandle<()>,
) {
    use actix_web::{App, HttpServer, web};
    use otac_actix::{IssueOtacLayer, RequireOtacLayer};
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
    let addr = listener.local_addr().expect("local address");
    let wfs = wfs.clone();
    let jwt = web::Data::new(Jwt::new());
    let server = HttpServer::new(move || {
        let route = |wf: &Workflow| {
            web::get()
                .to(actix_handler)
                .wrap(IssueOtacLayer::new(wf, "verify"))
                .wrap(RequireOtacLayer::new(wf, "verify"))
        };
        App::new()
            .app_data(jwt.clone())
            .route("/bare", web::get().to(actix_handler))
            .route("/jsonwebtoken", web::get().to(actix_hand_written))
            .route("/memory", route(&wfs.memory))
            .route("/stateless", route(&wfs.stateless))
    })
    .workers(1)
    .disable_signals()
    .listen(listener)
    .expect("listen")
    .run();
    let handle = server.handle();
    let thread = std::thread::spawn(move || {
        actix_rt::System::new()
            .block_on(server)
            .expect("actix-web server");
    });
    (addr, handle, thread)
}

// --- client --------------------------------------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq, Eq)]
enum Route {
    Bare,
    HandWritten,
    Memory,
    Stateless,
}

impl Route {
    fn path(self) -> &'static str {
        match self {
            Self::Bare => "/bare",
            Self::HandWritten => "/jsonwebtoken",
            Self::Memory => "/memory",
            Self::Stateless => "/stateless",
        }
    }
}

struct Variant {
    name: &'static str,
    addr: SocketAddr,
    route: Route,
    /// What mints the codes the requests carry.
    mint: Mint,
    header: http::HeaderName,
    requests: usize,
    elapsed: Duration,
    /// The wall time of each timed round (the same number of requests in each).
    rounds: Vec<Duration>,
    /// CPU time of the client thread and of all other threads (the servers) while the variant ran.
    client_cpu: Duration,
    server_cpu: Duration,
}

enum Mint {
    /// The bare route takes no code.
    Nothing,
    /// Bare `jsonwebtoken`.
    HandWritten(Box<Jwt>),
    /// The entry step's issuer of the route's workflow.
    Otac(Issuer),
}

impl Variant {
    /// One code per request, minted before the timed part.
    fn codes(&self, n: usize) -> Vec<Option<http::HeaderValue>> {
        (0..n)
            .map(|i| {
                let code = match &self.mint {
                    Mint::Nothing => return None,
                    Mint::HandWritten(jwt) => jwt.mint("verify", "start", format!("run-{i}")),
                    Mint::Otac(issuer) => {
                        issuer.issue(&IssueContext::default(), None).expect("issue")
                    }
                };
                Some(http::HeaderValue::from_str(&code).expect("header value"))
            })
            .collect()
    }
}

/// Sends `codes.len()` requests over `CONCURRENCY` connections; returns the wall time of the sending.
async fn load(variant: &Variant, codes: Vec<Option<http::HeaderValue>>) -> Duration {
    let n = codes.len();
    let codes = Arc::new(codes);
    let next = Arc::new(AtomicUsize::new(0));
    let mut senders = Vec::with_capacity(CONCURRENCY);
    for _ in 0..CONCURRENCY {
        let stream = tokio::net::TcpStream::connect(variant.addr)
            .await
            .expect("connect");
        stream.set_nodelay(true).expect("nodelay");
        let (sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .expect("handshake");
        tokio::spawn(async move {
            let _ = conn.await;
        });
        senders.push(sender);
    }
    let began = Instant::now();
    let uri: http::Uri = format!("http://{}{}", variant.addr, variant.route.path())
        .parse()
        .expect("uri");
    let expect_code = !matches!(variant.mint, Mint::Nothing);
    let tasks: Vec<_> = senders
        .into_iter()
        .map(|mut sender| {
            let (codes, next, uri, header) = (
                Arc::clone(&codes),
                Arc::clone(&next),
                uri.clone(),
                variant.header.clone(),
            );
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= codes.len() {
                        return;
                    }
                    let mut request = http::Request::get(uri.clone())
                        .header(http::header::HOST, "127.0.0.1")
                        .body(Empty::<Bytes>::new())
                        .expect("request");
                    if let Some(code) = &codes[i] {
                        request.headers_mut().insert(header.clone(), code.clone());
                    }
                    sender.ready().await.expect("connection ready");
                    let response = sender.send_request(request).await.expect("response");
                    let (parts, body) = response.into_parts();
                    let body = body.collect().await.expect("body").to_bytes();
                    assert_eq!(parts.status, http::StatusCode::OK, "{body:?}");
                    assert_eq!(parts.headers.contains_key(&header), expect_code);
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("client task");
    }
    let elapsed = began.elapsed();
    assert!(next.load(Ordering::Relaxed) >= n);
    elapsed
}

/// The CPU time (on-CPU, user and kernel) of the calling thread and of all other threads of this process, from
/// `/proc` (Linux); zero where it is not available.
fn cpu_times() -> (Duration, Duration) {
    fn runtime(path: &std::path::Path) -> u64 {
        std::fs::read_to_string(path)
            .ok()
            .and_then(|s| s.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    }
    let me = runtime(std::path::Path::new("/proc/thread-self/schedstat"));
    let all: u64 = std::fs::read_dir("/proc/self/task")
        .map(|tasks| {
            tasks
                .filter_map(Result::ok)
                .map(|t| runtime(&t.path().join("schedstat")))
                .sum()
        })
        .unwrap_or(0);
    (
        Duration::from_nanos(me),
        Duration::from_nanos(all.saturating_sub(me)),
    )
}

fn main() {
    // `cargo bench` passes `--bench`; a filter that names something else skips this target.
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args
        .iter()
        .any(|a| !a.starts_with('-') && !"http".contains(a.as_str()))
    {
        return;
    }
    let quick = args.iter().any(|a| a == "--test" || a == "--list");
    if args.iter().any(|a| a == "--list") {
        return;
    }
    let per_variant: usize = if quick {
        ROUNDS * CONCURRENCY
    } else {
        std::env::var("OTAC_BENCH_HTTP_REQUESTS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(20_000)
    };
    let per_round = per_variant.div_ceil(ROUNDS);
    let started = Instant::now();

    let axum_wfs = Workflows::new();
    let actix_wfs = Workflows::new();
    let (axum_addr, axum_stop, axum_thread) = axum_server(&axum_wfs);
    let (actix_addr, actix_handle, actix_thread) = actix_server(&actix_wfs);

    let variant = |name, addr, route, wfs: &Workflows| {
        let issuer = |wf: &Workflow| Mint::Otac(Issuer::new(wf, "start").expect("issuer"));
        Variant {
            name,
            addr,
            route,
            mint: match route {
                Route::Bare => Mint::Nothing,
                Route::HandWritten => Mint::HandWritten(Box::new(Jwt::new())),
                Route::Memory => issuer(&wfs.memory),
                Route::Stateless => issuer(&wfs.stateless),
            },
            header: wfs.memory.header().clone(),
            requests: 0,
            elapsed: Duration::ZERO,
            rounds: Vec::with_capacity(ROUNDS),
            client_cpu: Duration::ZERO,
            server_cpu: Duration::ZERO,
        }
    };
    let mut variants = Vec::new();
    for (framework, addr, wfs) in [
        ("axum", axum_addr, &axum_wfs),
        ("actix-web", actix_addr, &actix_wfs),
    ] {
        for (what, route) in [
            ("bare", Route::Bare),
            ("+ hand-written jsonwebtoken", Route::HandWritten),
            ("+ otac (memory store)", Route::Memory),
            ("+ otac (stateless)", Route::Stateless),
        ] {
            let name: &'static str = format!("{framework} {what}").leak();
            variants.push(variant(name, addr, route, wfs));
        }
    }

    let client = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("client runtime");
    for round in 0..=ROUNDS {
        let count = if round == 0 {
            WARM_UP.min(per_round)
        } else {
            per_round
        };
        for k in 0..PER_ROUND {
            // Rotate the order every round.
            let v = &mut variants[(k + round) % PER_ROUND];
            let codes = v.codes(count);
            let (client_before, server_before) = cpu_times();
            let elapsed = client
                .block_on(async { tokio::time::timeout(VARIANT_LIMIT, load(v, codes)).await });
            let (client_after, server_after) = cpu_times();
            let Ok(elapsed) = elapsed else {
                panic!(
                    "{}: {count} requests took longer than {VARIANT_LIMIT:?}",
                    v.name
                );
            };
            if round > 0 {
                v.requests += count;
                v.elapsed += elapsed;
                v.rounds.push(elapsed);
                v.client_cpu += client_after.saturating_sub(client_before);
                v.server_cpu += server_after.saturating_sub(server_before);
            }
            assert!(
                started.elapsed() < TOTAL_LIMIT,
                "the HTTP benchmark took longer than {TOTAL_LIMIT:?}"
            );
        }
    }

    let rate = |v: &Variant| v.requests as f64 / v.elapsed.as_secs_f64();
    let per_request = |cpu: Duration, v: &Variant| cpu.as_secs_f64() * 1e6 / v.requests as f64;
    // Throughput of `v` over that of `base`, from the sums, and the median of the ratios within each round (robust
    // to a burst of load from elsewhere during one round).
    let ratio = |v: &Variant, base: &Variant| {
        let mut per_round: Vec<f64> = v
            .rounds
            .iter()
            .zip(&base.rounds)
            .map(|(t, b)| b.as_secs_f64() / t.as_secs_f64())
            .collect();
        per_round.sort_by(f64::total_cmp);
        format!(
            "{:.3} ({:.3})",
            rate(v) / rate(base),
            per_round[per_round.len() / 2]
        )
    };
    println!(
        "http: {} requests per variant over 127.0.0.1, {CONCURRENCY} connections, {ROUNDS} alternating rounds, \
         server on one worker thread, client on one; ratios from the sums (and the median of the rounds)",
        variants[0].requests
    );
    println!(
        "  {:<40} {:>10}  {:>15}  {:>15}  {:>14}  {:>14}",
        "variant", "requests/s", "with/bare", "with/hand", "server CPU/req", "client CPU/req"
    );
    for chunk in variants.chunks(4) {
        for v in chunk {
            println!(
                "  {:<40} {:>10.0}  {:>15}  {:>15}  {:>11.1} us  {:>11.1} us",
                v.name,
                rate(v),
                ratio(v, &chunk[0]),
                if matches!(v.mint, Mint::Otac(_)) {
                    ratio(v, &chunk[1])
                } else {
                    String::new()
                },
                per_request(v.server_cpu, v),
                per_request(v.client_cpu, v),
            );
        }
    }

    let _ = axum_stop.send(());
    client.block_on(actix_handle.stop(true));
    axum_thread.join().expect("axum server thread");
    actix_thread.join().expect("actix-web server thread");
}
