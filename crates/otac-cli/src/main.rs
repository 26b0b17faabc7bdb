//! `otac`: generate keys, inspect, verify and mint one-time authorization codes.
//!
//! Secrets and private keys are read from environment variables or files, never from the command line.

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use clap::{Args, Parser, Subcommand, ValueEnum};
use otac::{
    Algorithm, Binding, ConfigError, IssueContext, Issuer, Key, KeySet, OtacClaims, Replay, Step,
    Verifier, Workflow,
};
use serde_json::Value;

/// One-time authorization codes: keys, inspection, verification and minting.
#[derive(Debug, Parser)]
#[command(name = "otac", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Generate a key: an HMAC secret (base64url text), or a PKCS#8 PEM private key and its public JWKS.
    Keygen(KeygenArgs),
    /// Decode a code and show its header, claims and expiry WITHOUT verifying anything.
    Inspect(InspectArgs),
    /// Verify a code for a step, as the step's verifier would (signature, issuer, workflow, time, audience,
    /// binding). One-time use is not checked. Exit status 1 when the code is rejected.
    Verify(VerifyArgs),
    /// Mint a genuine code for the next step(s) of a step, for tests and support staff.
    Mint(MintArgs),
}

/// The algorithms otac keys use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Alg {
    #[value(name = "HS256")]
    Hs256,
    #[value(name = "HS384")]
    Hs384,
    #[value(name = "HS512")]
    Hs512,
    #[value(name = "RS256")]
    Rs256,
    #[value(name = "PS256")]
    Ps256,
    #[value(name = "ES256")]
    Es256,
    #[value(name = "EdDSA")]
    EdDsa,
}

impl Alg {
    fn algorithm(self) -> Algorithm {
        match self {
            Self::Hs256 => Algorithm::HS256,
            Self::Hs384 => Algorithm::HS384,
            Self::Hs512 => Algorithm::HS512,
            Self::Rs256 => Algorithm::RS256,
            Self::Ps256 => Algorithm::PS256,
            Self::Es256 => Algorithm::ES256,
            Self::EdDsa => Algorithm::EdDSA,
        }
    }

    fn is_hmac(self) -> bool {
        matches!(self, Self::Hs256 | Self::Hs384 | Self::Hs512)
    }
}

#[derive(Debug, Args)]
struct KeygenArgs {
    /// The algorithm of the key.
    #[arg(long, value_enum)]
    alg: Alg,
    /// Write the secret or private key to this file (created with mode 0600) instead of standard output.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// Write the public JWKS to this file instead of standard output (asymmetric keys).
    #[arg(long, value_name = "FILE")]
    jwks_out: Option<PathBuf>,
    /// Publish the key under this kid instead of its RFC 7638 thumbprint (asymmetric keys; pass the same --kid
    /// to `mint`).
    #[arg(long)]
    kid: Option<String>,
    /// RSA modulus size in bits.
    #[arg(long, default_value_t = 3072, value_parser = clap::value_parser!(u32).range(2048..=8192))]
    bits: u32,
    /// Overwrite existing output files.
    #[arg(long)]
    force: bool,
}

#[derive(Debug, Args)]
struct InspectArgs {
    /// The code, or `-` to read it from standard input.
    code: String,
}

/// Where the key material comes from: exactly one source.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
struct KeySource {
    /// Environment variable holding the HMAC secret (its UTF-8 bytes are the key, as with OTAC_SECRET).
    #[arg(long, value_name = "VAR")]
    secret_env: Option<String>,
    /// File holding the HMAC secret (one trailing newline is ignored).
    #[arg(long, value_name = "FILE")]
    secret_file: Option<PathBuf>,
    /// PEM key file: a PKCS#8 private key (signs and verifies) or a public key (verifies only).
    #[arg(long, value_name = "PEM")]
    key: Option<PathBuf>,
    /// JWKS file with the public keys (verifies only).
    #[arg(long, value_name = "FILE")]
    jwks: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct KeyOptions {
    /// The key's algorithm: HS256 (default), HS384 or HS512 for secrets; RS256 or PS256 for an RSA PEM key (EC
    /// and Ed25519 PEM keys are ES256 and EdDSA).
    #[arg(long, value_enum)]
    alg: Option<Alg>,
    /// The key's kid, when the service set one with `with_kid` (default: derived from the key).
    #[arg(long)]
    kid: Option<String>,
    /// Environment variable holding the binding secret (`KeySet::with_binding_secret`), for subject bindings
    /// with asymmetric keys. HMAC keys derive it from the secret.
    #[arg(long, value_name = "VAR", conflicts_with = "binding_secret_file")]
    binding_secret_env: Option<String>,
    /// File holding the binding secret.
    #[arg(long, value_name = "FILE")]
    binding_secret_file: Option<PathBuf>,
}

/// How codes are bound to their caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum BindingArg {
    /// Not bound.
    None,
    /// Bound to a subject: a user id, or the value of a header, cookie or principal the service binds to (the
    /// hash is the same).
    Subject,
}

#[derive(Debug, Args)]
struct WorkflowArgs {
    /// The workflow name.
    #[arg(long)]
    workflow: String,
    /// The issuer name (`iss`) of the issuing service.
    #[arg(long, default_value = "otac")]
    issuer: String,
    /// The caller binding (default: `subject` when --subject is given, `none` otherwise).
    #[arg(long, value_enum)]
    binding: Option<BindingArg>,
    /// The subject (binding value) the code is, or must be, bound to.
    #[arg(long)]
    subject: Option<String>,
    /// The longest a run may last, in seconds.
    #[arg(long, default_value_t = 3600, value_name = "SECS")]
    run_lifetime: u64,
}

impl WorkflowArgs {
    fn binding(&self) -> BindingArg {
        self.binding.unwrap_or(if self.subject.is_some() {
            BindingArg::Subject
        } else {
            BindingArg::None
        })
    }
}

#[derive(Debug, Args)]
struct VerifyArgs {
    /// The code, or `-` to read it from standard input.
    code: String,
    /// The step the code is presented to.
    #[arg(long)]
    step: String,
    #[command(flatten)]
    workflow: WorkflowArgs,
    #[command(flatten)]
    source: KeySource,
    #[command(flatten)]
    key: KeyOptions,
    /// The longest lifetime of codes the service issues for this step, in seconds (a code living longer is
    /// refused).
    #[arg(long, default_value_t = 300, value_name = "SECS")]
    max_lifetime: u64,
    /// Clock leeway in seconds.
    #[arg(long, default_value_t = 5, value_name = "SECS")]
    leeway: u64,
}

#[derive(Debug, Args)]
struct MintArgs {
    /// The step whose success issues the code.
    #[arg(long, value_name = "STEP")]
    step_from: String,
    /// A step the code is for (repeat for branches).
    #[arg(long = "to", value_name = "STEP", required = true)]
    to: Vec<String>,
    #[command(flatten)]
    workflow: WorkflowArgs,
    #[command(flatten)]
    source: KeySource,
    #[command(flatten)]
    key: KeyOptions,
    /// A custom claim `name=value`; the value is JSON when it parses as JSON, a string otherwise. Repeatable.
    #[arg(long = "claim", value_name = "NAME=VALUE")]
    claims: Vec<String>,
    /// The code's lifetime in seconds.
    #[arg(long, default_value_t = 300, value_name = "SECS")]
    lifetime: u64,
}

/// Writes a line to standard output; a closed pipe (`otac inspect CODE | head`) ends the command quietly.
macro_rules! out {
    ($($arg:tt)*) => {
        emit(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// [`out!`] without the newline.
macro_rules! out_raw {
    ($($arg:tt)*) => {
        emit(format_args!($($arg)*))
    };
}

fn emit(text: std::fmt::Arguments<'_>) -> Result<(), Failure> {
    use std::io::Write as _;
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_fmt(text)
        .and_then(|()| stdout.flush())
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::BrokenPipe => Failure(String::new(), 1),
            _ => Failure(format!("cannot write to standard output: {e}"), 2),
        })
}

/// A failure that ends the command: the message, and the exit status.
struct Failure(String, u8);

impl From<ConfigError> for Failure {
    fn from(err: ConfigError) -> Self {
        Self(err.to_string(), 2)
    }
}

fn fail<T>(message: impl Into<String>) -> Result<T, Failure> {
    Err(Failure(message.into(), 2))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Keygen(args) => keygen(&args),
        Command::Inspect(args) => inspect(&args),
        Command::Verify(args) => verify(&args),
        Command::Mint(args) => mint(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure(message, code)) => {
            if !message.is_empty() {
                eprintln!("otac: {message}");
            }
            ExitCode::from(code)
        }
    }
}

// ---- keygen ---------------------------------------------------------------------------------------------------

fn keygen(args: &KeygenArgs) -> Result<(), Failure> {
    if args.alg.is_hmac() {
        if args.jwks_out.is_some() || args.kid.is_some() {
            return fail(
                "HMAC secrets are never published: --jwks-out and --kid are for asymmetric keys",
            );
        }
        let len = match args.alg {
            Alg::Hs256 => 32,
            Alg::Hs384 => 48,
            _ => 64,
        };
        let mut bytes = vec![0u8; len];
        getrandom::fill(&mut bytes).map_err(|_| Failure("no system randomness".into(), 2))?;
        let secret = URL_SAFE_NO_PAD.encode(&bytes);
        let key = hmac_key(args.alg, secret.as_bytes())?;
        eprintln!("kid: {}", key.kid());
        return match &args.out {
            Some(path) => {
                write_private(path, &format!("{secret}\n"), args.force)?;
                eprintln!(
                    "wrote the {:?} secret to {}",
                    args.alg.algorithm(),
                    path.display()
                );
                Ok(())
            }
            None => {
                out!("{secret}")?;
                Ok(())
            }
        };
    }
    let pem = generate_pem(args.alg, args.bits as usize)?;
    let mut key = private_pem_key(args.alg, pem.as_bytes())?;
    if let Some(kid) = &args.kid {
        key = key.with_kid(kid.clone())?;
    }
    eprintln!("kid: {}", key.kid());
    let jwks = pretty(&KeySet::new(key).jwks());
    match &args.out {
        Some(path) => {
            write_private(path, &pem, args.force)?;
            eprintln!("wrote the private key to {}", path.display());
        }
        None => out_raw!("{pem}")?,
    }
    match &args.jwks_out {
        Some(path) => {
            write_public(path, &format!("{jwks}\n"), args.force)?;
            eprintln!("wrote the public JWKS to {}", path.display());
        }
        None => out!("{jwks}")?,
    }
    Ok(())
}

fn generate_pem(alg: Alg, bits: usize) -> Result<String, Failure> {
    let failed = |_| Failure("key generation failed".into(), 2);
    match alg {
        Alg::Rs256 | Alg::Ps256 => {
            use rsa::pkcs8::{EncodePrivateKey, LineEnding};
            let key = rsa::PrivateKey::new(&mut getrandom::SysRng, bits)
                .map_err(|_| Failure("RSA key generation failed".into(), 2))?;
            key.to_pkcs8_pem(LineEnding::LF)
                .map(|pem| pem.to_string())
                .map_err(failed)
        }
        Alg::Es256 => {
            use p256::pkcs8::{EncodePrivateKey, LineEnding};
            let key = loop {
                let mut bytes = [0u8; 32];
                getrandom::fill(&mut bytes)
                    .map_err(|_| Failure("no system randomness".into(), 2))?;
                // Fails only for a scalar of zero or above the group order (probability ~2^-128).
                if let Ok(key) = p256::ecdsa::SigningKey::from_slice(&bytes) {
                    break key;
                }
            };
            key.to_pkcs8_pem(LineEnding::LF)
                .map(|pem| pem.to_string())
                .map_err(failed)
        }
        Alg::EdDsa => {
            use ed25519_dalek::pkcs8::{EncodePrivateKey, spki::der::pem::LineEnding};
            let mut seed = [0u8; 32];
            getrandom::fill(&mut seed).map_err(|_| Failure("no system randomness".into(), 2))?;
            ed25519_dalek::SigningKey::from_bytes(&seed)
                .to_pkcs8_pem(LineEnding::LF)
                .map(|pem| pem.to_string())
                .map_err(failed)
        }
        _ => fail("not an asymmetric algorithm"),
    }
}

fn open_new(path: &Path, force: bool, mode: u32) -> Result<std::fs::File, Failure> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true);
    if force {
        options.create(true).truncate(true);
    } else {
        options.create_new(true);
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    options.open(path).map_err(|e| {
        let hint = if e.kind() == std::io::ErrorKind::AlreadyExists {
            " (pass --force to overwrite)"
        } else {
            ""
        };
        Failure(format!("cannot create {}: {e}{hint}", path.display()), 2)
    })
}

fn write_private(path: &Path, contents: &str, force: bool) -> Result<(), Failure> {
    use std::io::Write as _;
    open_new(path, force, 0o600)?
        .write_all(contents.as_bytes())
        .map_err(|e| Failure(format!("cannot write {}: {e}", path.display()), 2))
}

fn write_public(path: &Path, contents: &str, force: bool) -> Result<(), Failure> {
    use std::io::Write as _;
    open_new(path, force, 0o644)?
        .write_all(contents.as_bytes())
        .map_err(|e| Failure(format!("cannot write {}: {e}", path.display()), 2))
}

// ---- keys -----------------------------------------------------------------------------------------------------

fn hmac_key(alg: Alg, secret: &[u8]) -> Result<Key, Failure> {
    Ok(match alg {
        Alg::Hs256 => Key::hs256(secret)?,
        Alg::Hs384 => Key::hs384(secret)?,
        Alg::Hs512 => Key::hs512(secret)?,
        _ => return fail("a secret is an HMAC key: --alg HS256, HS384 or HS512"),
    })
}

fn private_pem_key(alg: Alg, pem: &[u8]) -> Result<Key, Failure> {
    Ok(match alg {
        Alg::Rs256 => Key::rs256_pem(pem)?,
        Alg::Ps256 => Key::ps256_pem(pem)?,
        Alg::Es256 => Key::es256_pem(pem)?,
        Alg::EdDsa => Key::ed25519_pem(pem)?,
        _ => return fail("a PEM key is RS256, PS256, ES256 or EdDSA"),
    })
}

/// A PEM key of either kind; EC and Ed25519 keys are recognised, RSA keys need `--alg`.
fn pem_key(alg: Option<Alg>, pem: &[u8]) -> Result<Key, Failure> {
    let public = std::str::from_utf8(pem).is_ok_and(|t| t.contains("PUBLIC KEY-----"));
    let load = |alg: Alg| -> Result<Key, ConfigError> {
        if public {
            Key::public_pem(alg.algorithm(), pem)
        } else {
            match alg {
                Alg::Rs256 => Key::rs256_pem(pem),
                Alg::Ps256 => Key::ps256_pem(pem),
                Alg::Es256 => Key::es256_pem(pem),
                Alg::EdDsa => Key::ed25519_pem(pem),
                _ => Err(ConfigError::BadKey(
                    "a PEM key is RS256, PS256, ES256 or EdDSA",
                )),
            }
        }
    };
    match alg {
        Some(alg) if alg.is_hmac() => fail("a PEM key is RS256, PS256, ES256 or EdDSA"),
        Some(alg) => Ok(load(alg)?),
        None => load(Alg::Es256).or_else(|_| load(Alg::EdDsa)).or_else(|_| {
            if load(Alg::Rs256).is_ok() {
                Err(Failure(
                    "an RSA key serves RS256 or PS256: pass --alg".into(),
                    2,
                ))
            } else {
                fail("not a PEM key otac can use (PKCS#8 private key or public key)")
            }
        }),
    }
}

fn read_secret(source: &KeySource) -> Result<Option<Vec<u8>>, Failure> {
    if let Some(var) = &source.secret_env {
        return read_env(var).map(Some);
    }
    if let Some(path) = &source.secret_file {
        return read_secret_file(path).map(Some);
    }
    Ok(None)
}

fn read_env(var: &str) -> Result<Vec<u8>, Failure> {
    match std::env::var(var) {
        Ok(value) if !value.is_empty() => Ok(value.into_bytes()),
        Ok(_) => fail(format!("environment variable {var} is empty")),
        Err(_) => fail(format!(
            "environment variable {var} is not set (or not UTF-8)"
        )),
    }
}

fn read_secret_file(path: &Path) -> Result<Vec<u8>, Failure> {
    let mut bytes = read_file(path)?;
    if bytes.ends_with(b"\n") {
        bytes.pop();
        if bytes.ends_with(b"\r") {
            bytes.pop();
        }
    }
    if bytes.is_empty() {
        return fail(format!("{} is empty", path.display()));
    }
    Ok(bytes)
}

fn read_file(path: &Path) -> Result<Vec<u8>, Failure> {
    std::fs::read(path).map_err(|e| Failure(format!("cannot read {}: {e}", path.display()), 2))
}

fn key_set(source: &KeySource, options: &KeyOptions) -> Result<KeySet, Failure> {
    let mut keys = if let Some(secret) = read_secret(source)? {
        let key = hmac_key(options.alg.unwrap_or(Alg::Hs256), &secret)?;
        KeySet::new(with_kid(key, options)?)
    } else if let Some(path) = &source.key {
        let key = pem_key(options.alg, &read_file(path)?)?;
        KeySet::new(with_kid(key, options)?)
    } else if let Some(path) = &source.jwks {
        if options.kid.is_some() || options.alg.is_some() {
            return fail("a JWKS names kid and alg of every key: drop --kid and --alg");
        }
        KeySet::from_jwks(read_file(path)?)?
    } else {
        return fail("no key: pass --secret-env, --secret-file, --key or --jwks");
    };
    if let Some(var) = &options.binding_secret_env {
        keys = keys.with_binding_secret(read_env(var)?)?;
    }
    if let Some(path) = &options.binding_secret_file {
        keys = keys.with_binding_secret(read_secret_file(path)?)?;
    }
    Ok(keys)
}

fn with_kid(key: Key, options: &KeyOptions) -> Result<Key, Failure> {
    Ok(match &options.kid {
        Some(kid) => key.with_kid(kid.clone())?,
        None => key,
    })
}

fn binding(args: &WorkflowArgs) -> Binding {
    match args.binding() {
        BindingArg::None => Binding::none(),
        BindingArg::Subject => Binding::subject(),
    }
}

fn explain(err: ConfigError) -> Failure {
    match err {
        ConfigError::BindingSecretRequired => Failure(
            "a subject binding with an asymmetric key or a JWKS needs the service's binding secret: pass \
             --binding-secret-env or --binding-secret-file"
                .into(),
            2,
        ),
        other => other.into(),
    }
}

// ---- inspect --------------------------------------------------------------------------------------------------

fn read_code(code: &str) -> Result<String, Failure> {
    if code != "-" {
        return Ok(code.trim().to_owned());
    }
    let mut text = String::new();
    std::io::stdin()
        .read_to_string(&mut text)
        .map_err(|e| Failure(format!("cannot read the code from standard input: {e}"), 2))?;
    Ok(text.trim().to_owned())
}

fn decode_segment(segment: &str) -> Result<Value, String> {
    let bytes = URL_SAFE_NO_PAD
        .decode(segment)
        .map_err(|_| "not base64url".to_owned())?;
    serde_json::from_slice(&bytes).map_err(|_| "not JSON".to_owned())
}

fn inspect(args: &InspectArgs) -> Result<(), Failure> {
    let code = read_code(&args.code)?;
    let parts: Vec<&str> = code.split('.').collect();
    if parts.len() != 3 {
        return fail("not a compact JWS (three dot-separated parts)");
    }
    let header = decode_segment(parts[0]).map_err(|e| Failure(format!("header: {e}"), 2))?;
    let claims = decode_segment(parts[1]).map_err(|e| Failure(format!("claims: {e}"), 2))?;
    out!(
        "NOT VERIFIED: decoded without checking the signature, issuer, audience, binding or one-time use. Do not \
         trust these values."
    )?;
    out!("header:\n{}", pretty(&header))?;
    out!("claims:\n{}", pretty(&claims))?;
    let now = now_secs();
    let time = |name: &str| claims.get(name).and_then(Value::as_u64);
    if let Some(iat) = time("iat") {
        out!(
            "issued:   {} ({} ago)",
            utc(iat),
            span(now.saturating_sub(iat))
        )?;
    }
    match time("exp") {
        Some(exp) if exp > now => {
            out!("expires:  {} (in {})", utc(exp), span(exp - now))?;
        }
        Some(exp) => out!("expires:  {} (EXPIRED {} ago)", utc(exp), span(now - exp))?,
        None => out!("expires:  no exp claim")?,
    }
    if let Some(rat) = time("rat") {
        out!(
            "run since: {} ({} ago)",
            utc(rat),
            span(now.saturating_sub(rat))
        )?;
    }
    Ok(())
}

fn pretty(value: &Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs()
}

/// `secs` since the Unix epoch as an RFC 3339 UTC time.
fn utc(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// A duration in the two largest units, e.g. `4m 12s`.
fn span(secs: u64) -> String {
    let units = [("d", 86_400), ("h", 3600), ("m", 60), ("s", 1)];
    let mut out = Vec::new();
    let mut rest = secs;
    for (name, size) in units {
        let n = rest / size;
        rest %= size;
        if n > 0 || (out.is_empty() && size == 1) {
            out.push(format!("{n}{name}"));
        }
        if out.len() == 2 {
            break;
        }
        if !out.is_empty() && rest == 0 {
            break;
        }
    }
    out.join(" ")
}

// ---- verify ---------------------------------------------------------------------------------------------------

/// A step name for the CLI's stand-in issuing step, different from `avoid`.
fn stand_in(avoid: &[String]) -> String {
    let mut name = "otac-cli-issuer".to_owned();
    while avoid.contains(&name) {
        name.push('_');
    }
    name
}

fn verify(args: &VerifyArgs) -> Result<(), Failure> {
    let code = read_code(&args.code)?;
    let keys = key_set(&args.source, &args.key)?;
    let from = stand_in(std::slice::from_ref(&args.step));
    let workflow = Workflow::builder(args.workflow.workflow.clone())
        .issuer(args.workflow.issuer.clone())
        .keys(keys)
        .binding(binding(&args.workflow))
        .replay(Replay::stateless())
        .run_lifetime(Duration::from_secs(args.workflow.run_lifetime))
        .leeway(Duration::from_secs(args.leeway))
        .step(
            Step::new(from)
                .then(args.step.clone())
                .lifetime(Duration::from_secs(args.max_lifetime.max(1))),
        )
        .step(Step::new(args.step.clone()))
        .build()
        .map_err(explain)?;
    let verifier = Verifier::new(&workflow, &args.step)?;
    let parts = http::Request::new(()).into_parts().0;
    let result =
        verifier
            .verify_token(&code, &parts)
            .and_then(|verified| match &args.workflow.subject {
                Some(subject) if !verified.subject_is(subject) => Err(otac::OtacError::new(
                    otac::OtacErrorKind::BindingMismatch,
                    "code is bound to another subject",
                )),
                _ => Ok(verified),
            });
    match result {
        Ok(verified) => {
            let claims = serde_json::to_value(verified.claims()).unwrap_or(Value::Null);
            out!("{}", pretty(&claims))?;
            eprintln!(
                "VERIFIED for step {}: signature, issuer, workflow, time, audience{}. One-time use was not checked.",
                args.step,
                if args.workflow.subject.is_some() {
                    " and subject"
                } else {
                    ""
                }
            );
            Ok(())
        }
        Err(err) => {
            out!("{}", err.code())?;
            Err(Failure(format!("rejected: {err}"), 1))
        }
    }
}

// ---- mint -----------------------------------------------------------------------------------------------------

fn mint(args: &MintArgs) -> Result<(), Failure> {
    if args.to.contains(&args.step_from) {
        return fail("--step-from and --to name the same step");
    }
    let keys = key_set(&args.source, &args.key)?;
    if !keys.current().can_sign() {
        return fail("minting needs a signing key: a secret or a private PEM key");
    }
    let mut from =
        Step::new(args.step_from.clone()).lifetime(Duration::from_secs(args.lifetime.max(1)));
    for to in &args.to {
        from = from.then(to.clone());
    }
    let mut builder = Workflow::builder(args.workflow.workflow.clone())
        .issuer(args.workflow.issuer.clone())
        .keys(keys)
        .binding(binding(&args.workflow))
        .replay(Replay::stateless())
        .run_lifetime(Duration::from_secs(args.workflow.run_lifetime))
        .step(from);
    for to in &args.to {
        builder = builder.step(Step::new(to.clone()));
    }
    let workflow = builder.build().map_err(explain)?;
    let mut attached = OtacClaims::new();
    if let Some(subject) = &args.workflow.subject {
        if args.workflow.binding() == BindingArg::None {
            return fail("--subject binds the code: drop --binding none");
        }
        attached = attached.subject(subject.clone());
    } else if args.workflow.binding() == BindingArg::Subject {
        return fail("--binding subject needs --subject");
    }
    for claim in &args.claims {
        let Some((name, value)) = claim.split_once('=') else {
            return fail(format!("--claim {claim}: expected NAME=VALUE"));
        };
        if name.is_empty() {
            return fail(format!("--claim {claim}: empty name"));
        }
        let value = serde_json::from_str(value).unwrap_or_else(|_| Value::String(value.to_owned()));
        attached = attached.claim(name, value);
    }
    let issuer = Issuer::new(&workflow, &args.step_from)?;
    let code = issuer
        .issue(&IssueContext::default(), Some(&attached))
        .map_err(|e| Failure(format!("cannot mint: {e}"), 2))?;
    out!("{code}")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_formats_known_times() {
        assert_eq!(utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(utc(1_767_225_599), "2025-12-31T23:59:59Z");
    }

    #[test]
    fn spans_read_naturally() {
        assert_eq!(span(0), "0s");
        assert_eq!(span(59), "59s");
        assert_eq!(span(252), "4m 12s");
        assert_eq!(span(3600), "1h");
        assert_eq!(span(90_061), "1d 1h");
    }

    #[test]
    fn cli_definition_is_consistent() {
        use clap::CommandFactory as _;
        Cli::command().debug_assert();
    }
}
