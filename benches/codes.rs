//! The cost of one code, side by side with what a user would otherwise write, in one run.
//!
//! ```text
//! cargo bench --bench codes                                          # full run
//! cargo bench --bench codes -- --warm-up-time 1 --measurement-time 3 # a quick one
//! OTAC_BENCH_PAIRED=0 cargo bench --bench codes                      # criterion groups only
//! ```
//!
//! For each algorithm (`HS256`, `EdDSA`, `ES256`), one criterion group `codes_<alg>` with four functions, all over
//! the same claim set (`iss`, `aud`, `exp`, `iat`, `nbf`, `jti`, `wf`, `run`, `stp`, `rat`; no caller binding, no
//! custom claims) and the same protected header (`alg`, `typ`, `kid`):
//!
//! - `jsonwebtoken_encode_decode` (the baseline): a fresh random 128-bit `jti`, bare `jsonwebtoken::encode` of an
//!   equivalent claim struct, then `jsonwebtoken::decode` with a `Validation` of `aud`, `iss`, `exp` and `nbf`.
//! - `core_issue_verify`: `Issuer::issue` for the entry step (fresh run id and `jti`), the code put into the header
//!   of an `http::request::Parts`, `Verifier::verify` of it for the next step.
//! - `layer_require_consume_issue`: one request through `RequireOtacLayer` + `IssueOtacLayer` around a trivial
//!   `service_fn` (`tower::ServiceExt::oneshot`, polled in place): verify, spend in a `MemoryStore`, call the
//!   service, issue the code for the step after. Every timed request carries an unspent code, minted before the
//!   timed section through an `IssueOtacLayer` on the entry step.
//! - `layer_require_issue_stateless`: the same with `Replay::stateless()`: no store call (the cost of one-time use
//!   is the difference).
//!
//! After the groups, the four are measured once more in alternating batches (on a shared machine the load drifts
//! between criterion runs; alternation makes the drift hit all sides alike), and the ratios to the baseline are
//! printed. Skipped with `--test`, `--list` or `OTAC_BENCH_PAIRED=0`.

use std::convert::Infallible;
use std::future::Future;
use std::hint::black_box;
use std::path::Path;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::http::header::{HeaderName, HeaderValue};
use axum::http::{Request, Response, StatusCode};
use criterion::Criterion;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use otac::{
    Binding, IssueContext, IssueOtacLayer, Issuer, Key, KeySet, MemoryStore, Replay,
    RequireOtacLayer, Step, Verifier, Workflow,
};
use serde::{Deserialize, Serialize};
use tower::{Layer, Service, ServiceExt, service_fn};

const ISSUER: &str = "accounts.example";
const WORKFLOW: &str = "onboarding";
const HMAC_SECRET: &[u8] = b"a benchmark secret of at least thirty-two bytes";

/// The claim set of an otac code, as a user of bare `jsonwebtoken` would write it.
#[derive(Serialize, Deserialize)]
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

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// 128 random bits in base64url, as otac makes a `jti`.
fn random_id() -> String {
    use base64::Engine as _;
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).expect("system randomness");
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Runs an in-process future that never waits (memory store, trivial service) to completion.
fn complete<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    let mut cx = Context::from_waker(Waker::noop());
    for _ in 0..64 {
        if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return output;
        }
    }
    panic!("an in-process service did not complete");
}

/// One algorithm: otac's key and the same key pair for the baseline.
struct Alg {
    name: &'static str,
    otac: Key,
    jwt_alg: Algorithm,
    jwt_encoding: EncodingKey,
    jwt_decoding: DecodingKey,
    /// Operations per batch in the paired run, so that one batch takes some 10 ms.
    batch: usize,
}

fn fixture(name: &str) -> Option<Vec<u8>> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("crates/otac/tests/keys")
        .join(name);
    std::fs::read(path).ok()
}

fn algorithms() -> Vec<Alg> {
    let hs = Key::hs256(HMAC_SECRET).expect("HS256 key");
    let mut algs = vec![Alg {
        name: "HS256",
        otac: hs,
        jwt_alg: Algorithm::HS256,
        jwt_encoding: EncodingKey::from_secret(HMAC_SECRET).expect("HS256 key"),
        jwt_decoding: DecodingKey::from_secret(HMAC_SECRET).expect("HS256 key"),
        batch: 2_000,
    }];
    match (fixture("ed-a.pem"), fixture("ed-a.pub.pem")) {
        (Some(private), Some(public)) => algs.push(Alg {
            name: "EdDSA",
            otac: Key::ed25519_pem(&private).expect("Ed25519 key"),
            jwt_alg: Algorithm::EdDSA,
            jwt_encoding: EncodingKey::from_ed_pem(&private).expect("Ed25519 key"),
            jwt_decoding: DecodingKey::from_ed_pem(&public).expect("Ed25519 public key"),
            batch: 200,
        }),
        _ => eprintln!("codes: no Ed25519 fixture under crates/otac/tests/keys: EdDSA skipped"),
    }
    match (fixture("ec-a.pem"), fixture("ec-a.pub.pem")) {
        (Some(private), Some(public)) => algs.push(Alg {
            name: "ES256",
            otac: Key::es256_pem(&private).expect("P-256 key"),
            jwt_alg: Algorithm::ES256,
            jwt_encoding: EncodingKey::from_ec_pem(&private).expect("P-256 key"),
            jwt_decoding: DecodingKey::from_ec_pem(&public).expect("P-256 public key"),
            batch: 40,
        }),
        _ => eprintln!("codes: no P-256 fixture under crates/otac/tests/keys: ES256 skipped"),
    }
    algs
}

/// `start` (entry) -> `verify` -> `done`: `verify` is the step that requires a code and issues the next.
fn workflow(key: &Key, replay: Replay) -> Workflow {
    Workflow::builder(WORKFLOW)
        .issuer(ISSUER)
        .keys(KeySet::new(key.clone()))
        .binding(Binding::none())
        .replay(replay)
        .step(Step::new("start").entry().then("verify"))
        .step(Step::new("verify").then("done"))
        .step(Step::new("done"))
        .build()
        .expect("benchmark workflow")
}

// --- (a) the baseline ----------------------------------------------------------------------------------------

struct Baseline {
    header: Header,
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
}

impl Baseline {
    fn new(alg: &Alg) -> Self {
        let mut header = Header::new(alg.jwt_alg);
        header.typ = Some("otac+jwt".to_owned());
        header.kid = Some(alg.otac.kid().to_owned());
        let mut validation = Validation::new(alg.jwt_alg);
        validation.set_audience(&["verify"]);
        validation.set_issuer(&[ISSUER]);
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp", "aud", "iss"]);
        Self {
            header,
            encoding: alg.jwt_encoding.clone(),
            decoding: alg.jwt_decoding.clone(),
            validation,
        }
    }

    #[inline(never)]
    fn once(&self) {
        let now = now_secs();
        let claims = JwtClaims {
            iss: ISSUER.to_owned(),
            aud: "verify".to_owned(),
            exp: now + 300,
            iat: now,
            nbf: now,
            jti: random_id(),
            wf: WORKFLOW.to_owned(),
            run: "2Nf1c3JxQW1pWm9aVnRtWQ".to_owned(),
            stp: "start".to_owned(),
            rat: now,
        };
        let token = jsonwebtoken::encode(&self.header, &claims, &self.encoding).expect("encode");
        let data = jsonwebtoken::decode::<JwtClaims>(&token, &self.decoding, &self.validation)
            .expect("decode");
        black_box(data.claims);
    }
}

// --- (b) the core --------------------------------------------------------------------------------------------

struct Core {
    issuer: Issuer,
    verifier: Verifier,
    parts: axum::http::request::Parts,
    header: HeaderName,
}

impl Core {
    fn new(alg: &Alg) -> Self {
        let wf = workflow(&alg.otac, Replay::store(MemoryStore::new(1024)));
        Self {
            issuer: Issuer::new(&wf, "start").expect("issuer"),
            verifier: Verifier::new(&wf, "verify").expect("verifier"),
            parts: Request::builder()
                .uri("/verify")
                .body(())
                .expect("request")
                .into_parts()
                .0,
            header: wf.header().clone(),
        }
    }

    #[inline(never)]
    fn once(&mut self) {
        let code = self
            .issuer
            .issue(&IssueContext::default(), None)
            .expect("issue");
        let value = HeaderValue::from_str(&code).expect("header value");
        self.parts.headers.insert(self.header.clone(), value);
        let verified = self.verifier.verify(&self.parts).expect("verify");
        black_box(verified);
    }
}

// --- (c) the tower layers ------------------------------------------------------------------------------------

type Res = Response<Bytes>;

async fn handler(_req: Request<()>) -> Result<Res, Infallible> {
    Ok(Response::new(Bytes::from_static(b"ok")))
}

/// A fresh workflow with its own store: the layered `verify` step, and the entry step's issue layer that mints the
/// codes it takes.
struct Layers<S, M> {
    step: S,
    mint: M,
    header: HeaderName,
}

/// Requests per minting chunk: minted, then timed, then the next chunk.
const CHUNK: usize = 2_048;

/// The layers over a `MemoryStore` with room for `capacity` codes, or stateless for `None`.
fn layers(
    alg: &Alg,
    capacity: Option<usize>,
) -> Layers<
    impl Service<Request<()>, Response = Res, Error = Infallible> + Clone,
    impl Service<Request<()>, Response = Res, Error = Infallible> + Clone,
> {
    // Room for every code of the run (entries outlive the codes).
    let replay = match capacity {
        Some(capacity) => Replay::store(MemoryStore::new(capacity.max(CHUNK) * 2)),
        None => Replay::stateless(),
    };
    let wf = workflow(&alg.otac, replay);
    let step = RequireOtacLayer::new(&wf, "verify")
        .layer(IssueOtacLayer::new(&wf, "verify").layer(service_fn(handler)));
    let mint = IssueOtacLayer::new(&wf, "start").layer(service_fn(handler));
    Layers {
        step,
        mint,
        header: wf.header().clone(),
    }
}

impl<S, M> Layers<S, M>
where
    S: Service<Request<()>, Response = Res, Error = Infallible> + Clone,
    M: Service<Request<()>, Response = Res, Error = Infallible> + Clone,
{
    /// `n` requests to the `verify` step, each with a fresh code from the entry step's issue layer.
    fn requests(&self, n: usize) -> Vec<Request<()>> {
        (0..n)
            .map(|_| {
                let response = complete(self.mint.clone().oneshot(Request::new(()))).expect("mint");
                let code = response
                    .headers()
                    .get(&self.header)
                    .expect("the entry step issues a code")
                    .clone();
                let mut request = Request::new(());
                request.headers_mut().insert(self.header.clone(), code);
                request
            })
            .collect()
    }

    #[inline(never)]
    fn call(&self, request: Request<()>) {
        let response = complete(self.step.clone().oneshot(request)).expect("infallible");
        assert_eq!(response.status(), StatusCode::OK);
        assert!(response.headers().contains_key(&self.header));
        black_box(response);
    }

    /// Time for `n` requests, codes minted outside the timed sections.
    fn timed(&self, n: usize) -> Duration {
        let mut spent = Duration::ZERO;
        let mut left = n;
        while left > 0 {
            let chunk = left.min(CHUNK);
            let requests = self.requests(chunk);
            let began = Instant::now();
            for request in requests {
                self.call(request);
            }
            spent += began.elapsed();
            left -= chunk;
        }
        spent
    }
}

fn bench(c: &mut Criterion, algs: &[Alg]) {
    for alg in algs {
        let mut group = c.benchmark_group(format!("codes_{}", alg.name));
        let baseline = Baseline::new(alg);
        group.bench_function("jsonwebtoken_encode_decode", |b| b.iter(|| baseline.once()));
        let mut core = Core::new(alg);
        group.bench_function("core_issue_verify", |b| b.iter(|| core.once()));
        group.bench_function("layer_require_consume_issue", |b| {
            b.iter_custom(|iters| layers(alg, Some(iters as usize)).timed(iters as usize));
        });
        let stateless = layers(alg, None);
        group.bench_function("layer_require_issue_stateless", |b| {
            b.iter_custom(|iters| stateless.timed(iters as usize));
        });
        group.finish();
    }
}

/// The four side by side in alternating batches; prints ns per operation and the ratios to the baseline: over
/// the sums of all rounds, and the median of the per-round ratios (robust to a burst of load in one round).
fn paired(algs: &[Alg]) {
    const ROUNDS: usize = 24;
    for alg in algs {
        let baseline = Baseline::new(alg);
        let mut core = Core::new(alg);
        let layered = layers(alg, Some((ROUNDS + 1) * alg.batch));
        let stateless = layers(alg, None);
        let mut rounds: Vec<[Duration; 4]> = Vec::with_capacity(ROUNDS);
        // One untimed round first.
        for round in 0..=ROUNDS {
            let began = Instant::now();
            for _ in 0..alg.batch {
                baseline.once();
            }
            let ta = began.elapsed();
            let began = Instant::now();
            for _ in 0..alg.batch {
                core.once();
            }
            let tb = began.elapsed();
            let tc = layered.timed(alg.batch);
            let td = stateless.timed(alg.batch);
            if round > 0 {
                rounds.push([ta, tb, tc, td]);
            }
        }
        let ops = (ROUNDS * alg.batch) as f64;
        let ns = |i: usize| rounds.iter().map(|r| r[i]).sum::<Duration>().as_secs_f64() * 1e9 / ops;
        let median = |i: usize| {
            let mut ratios: Vec<f64> = rounds
                .iter()
                .map(|r| r[i].as_secs_f64() / r[0].as_secs_f64())
                .collect();
            ratios.sort_by(f64::total_cmp);
            ratios[ratios.len() / 2]
        };
        println!(
            "codes paired {} ({ROUNDS} rounds of {}): jsonwebtoken encode+decode {:.0} ns; core issue+verify {:.0} ns, \
             {:.2}x (median {:.2}x); layer require+consume+issue {:.0} ns, {:.2}x (median {:.2}x); stateless \
             layer require+issue {:.0} ns, {:.2}x (median {:.2}x)",
            alg.name,
            alg.batch,
            ns(0),
            ns(1),
            ns(1) / ns(0),
            median(1),
            ns(2),
            ns(2) / ns(0),
            median(2),
            ns(3),
            ns(3) / ns(0),
            median(3),
        );
    }
}

fn main() {
    let algs = algorithms();
    let mut criterion = Criterion::default().configure_from_args();
    bench(&mut criterion, &algs);
    criterion.final_summary();
    let quick = std::env::args().any(|a| a == "--test" || a == "--list");
    if !quick && std::env::var("OTAC_BENCH_PAIRED").as_deref() != Ok("0") {
        paired(&algs);
    }
}
