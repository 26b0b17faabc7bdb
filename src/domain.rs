//! The onboarding domain, shared by the axum and actix-web examples: users, verification codes sent by email and
//! SMS, and a development outbox where those messages land.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use serde::{Deserialize, Serialize};

/// A message a real system would send by email or SMS.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct OutboxMessage {
    /// `email` or `sms`.
    pub channel: String,
    /// The address or number.
    pub to: String,
    /// The verification code in the message.
    pub code: String,
    #[serde(skip)]
    user_id: String,
}

/// A user's state, as `GET /users/{id}` shows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct UserView {
    /// The user's id.
    pub user_id: String,
    /// `invited` until the password is set, then `active`.
    pub status: String,
    /// Whether the email was verified.
    pub email_verified: bool,
    /// Whether the mobile number was verified.
    pub mobile_verified: bool,
}

#[derive(Debug)]
struct User {
    mobile: String,
    email_code: Option<String>,
    sms_code: Option<String>,
    sms_attempts: u32,
    email_attempts: u32,
    email_verified: bool,
    mobile_verified: bool,
    password_set: bool,
}

/// Why a domain operation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DomainError {
    /// No such user.
    UnknownUser,
    /// The verification code does not match.
    WrongCode,
    /// The request is not valid (empty email, weak password, ...).
    Invalid(&'static str),
    /// The step was already done.
    AlreadyDone,
    /// Too many wrong verification codes: the workflow run is aborted.
    TooManyAttempts,
    /// The one-time authorization code does not name the user it is bound to (answered as
    /// `403 otac_binding_mismatch`).
    NotBound,
}

/// Wrong codes (email or SMS) a user may enter before the code is void (and, for SMS, the run aborted).
pub const MAX_SMS_ATTEMPTS: u32 = 3;

impl DomainError {
    /// A stable error code for the JSON body.
    pub fn code(self) -> &'static str {
        match self {
            Self::UnknownUser => "unknown_user",
            Self::WrongCode => "wrong_verification_code",
            Self::Invalid(_) => "invalid_request",
            Self::AlreadyDone => "already_done",
            Self::TooManyAttempts => "too_many_attempts",
            Self::NotBound => "otac_binding_mismatch",
        }
    }

    /// The HTTP status.
    pub fn status(self) -> u16 {
        match self {
            Self::UnknownUser => 404,
            Self::WrongCode | Self::Invalid(_) => 422,
            Self::AlreadyDone => 409,
            Self::TooManyAttempts => 429,
            Self::NotBound => 403,
        }
    }

    /// The one-time authorization code error this stands for, if any: answered as problem+json like every other
    /// code rejection.
    pub fn otac_error(self) -> Option<otac::OtacError> {
        match self {
            Self::NotBound => Some(otac::OtacError::new(
                otac::OtacErrorKind::BindingMismatch,
                "the code is not bound to the user it names",
            )),
            _ => None,
        }
    }

    /// The JSON body of the error.
    pub fn body(self) -> serde_json::Value {
        let detail = match self {
            Self::Invalid(why) => why,
            Self::UnknownUser => "no such user",
            Self::WrongCode => "the verification code does not match",
            Self::AlreadyDone => "this step is already done",
            Self::TooManyAttempts => "too many wrong codes: start again with a new invitation",
            Self::NotBound => "the code is not bound to the user it names",
        };
        serde_json::json!({ "code": self.code(), "detail": detail })
    }
}

/// Users and the outbox, in memory.
#[derive(Debug, Clone, Default)]
pub struct Directory {
    inner: Arc<Mutex<State>>,
}

#[derive(Debug, Default)]
struct State {
    users: HashMap<String, User>,
    outbox: Vec<OutboxMessage>,
}

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).expect("system randomness");
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

fn six_digits() -> String {
    let mut buf = [0u8; 4];
    getrandom::fill(&mut buf).expect("system randomness");
    format!("{:06}", u32::from_le_bytes(buf) % 1_000_000)
}

impl Directory {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Invites a user: creates them and queues the email code. Returns the user id.
    pub fn invite(&self, email: &str, mobile: &str) -> Result<String, DomainError> {
        let email = email.trim();
        let mobile = mobile.trim();
        if email.is_empty() || !email.contains('@') || email.len() > 254 {
            return Err(DomainError::Invalid("email must be an address"));
        }
        if mobile.is_empty() || mobile.len() > 32 {
            return Err(DomainError::Invalid("mobile must be a phone number"));
        }
        let user_id = format!("u_{}", random_hex(8));
        let code = six_digits();
        let mut state = self.lock();
        state.outbox.push(OutboxMessage {
            channel: "email".into(),
            to: email.into(),
            code: code.clone(),
            user_id: user_id.clone(),
        });
        state.users.insert(
            user_id.clone(),
            User {
                mobile: mobile.into(),
                email_code: Some(code),
                sms_code: None,
                sms_attempts: 0,
                email_attempts: 0,
                email_verified: false,
                mobile_verified: false,
                password_set: false,
            },
        );
        Ok(user_id)
    }

    /// Checks the email code; on success queues the SMS code.
    pub fn verify_email(&self, user_id: &str, code: &str) -> Result<(), DomainError> {
        let mut state = self.lock();
        let user = state
            .users
            .get_mut(user_id)
            .ok_or(DomainError::UnknownUser)?;
        if user.email_verified {
            return Err(DomainError::AlreadyDone);
        }
        // Six digits are guessable without a limit: the third wrong code voids this one.
        if user.email_attempts >= MAX_SMS_ATTEMPTS {
            return Err(DomainError::TooManyAttempts);
        }
        if !matches_code(user.email_code.as_deref(), code) {
            user.email_attempts += 1;
            if user.email_attempts >= MAX_SMS_ATTEMPTS {
                user.email_code = None;
                return Err(DomainError::TooManyAttempts);
            }
            return Err(DomainError::WrongCode);
        }
        user.email_verified = true;
        user.email_code = None;
        let sms = six_digits();
        user.sms_code = Some(sms.clone());
        let to = user.mobile.clone();
        state.outbox.push(OutboxMessage {
            channel: "sms".into(),
            to,
            code: sms,
            user_id: user_id.into(),
        });
        Ok(())
    }

    /// Checks the SMS code; the third wrong one ends the attempt for good.
    pub fn verify_mobile(&self, user_id: &str, code: &str) -> Result<(), DomainError> {
        let mut state = self.lock();
        let user = state
            .users
            .get_mut(user_id)
            .ok_or(DomainError::UnknownUser)?;
        if !user.email_verified {
            return Err(DomainError::Invalid("email not verified"));
        }
        if user.mobile_verified {
            return Err(DomainError::AlreadyDone);
        }
        if user.sms_attempts >= MAX_SMS_ATTEMPTS {
            return Err(DomainError::TooManyAttempts);
        }
        if !matches_code(user.sms_code.as_deref(), code) {
            user.sms_attempts += 1;
            if user.sms_attempts >= MAX_SMS_ATTEMPTS {
                user.sms_code = None;
                return Err(DomainError::TooManyAttempts);
            }
            return Err(DomainError::WrongCode);
        }
        user.mobile_verified = true;
        user.sms_code = None;
        Ok(())
    }

    /// Sets the password (at least 8 characters); the user becomes active.
    pub fn set_password(&self, user_id: &str, password: &str) -> Result<(), DomainError> {
        if password.chars().count() < 8 {
            return Err(DomainError::Invalid(
                "password must have at least 8 characters",
            ));
        }
        let mut state = self.lock();
        let user = state
            .users
            .get_mut(user_id)
            .ok_or(DomainError::UnknownUser)?;
        if !(user.email_verified && user.mobile_verified) {
            return Err(DomainError::Invalid(
                "email and mobile must be verified first",
            ));
        }
        if user.password_set {
            return Err(DomainError::AlreadyDone);
        }
        user.password_set = true;
        Ok(())
    }

    /// A user's state.
    pub fn user(&self, user_id: &str) -> Option<UserView> {
        let state = self.lock();
        state.users.get(user_id).map(|u| UserView {
            user_id: user_id.into(),
            status: if u.password_set { "active" } else { "invited" }.into(),
            email_verified: u.email_verified,
            mobile_verified: u.mobile_verified,
        })
    }

    /// The messages sent to a user, oldest first.
    pub fn outbox(&self, user_id: &str) -> Vec<OutboxMessage> {
        let state = self.lock();
        state
            .outbox
            .iter()
            .filter(|m| m.user_id == user_id)
            .cloned()
            .collect()
    }
}

/// Constant-time comparison of a verification code.
fn matches_code(expected: Option<&str>, given: &str) -> bool {
    let Some(expected) = expected else {
        return false;
    };
    let (a, b) = (expected.as_bytes(), given.trim().as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `POST /invitations`.
#[derive(Debug, Deserialize)]
pub struct Invitation {
    /// The invitee's email address.
    pub email: String,
    /// The invitee's mobile number.
    pub mobile: String,
}

/// `GET /_dev/outbox?user_id=…`.
#[derive(Debug, Deserialize)]
pub struct OutboxQuery {
    /// Whose messages.
    pub user_id: String,
}

/// `POST /verify-email`.
#[derive(Debug, Deserialize)]
pub struct EmailVerification {
    /// The invited user.
    pub user_id: String,
    /// The emailed code.
    pub code: String,
}

/// `POST /verify-mobile`: the user comes from the one-time authorization code, not from the body.
#[derive(Debug, Deserialize)]
pub struct MobileVerification {
    /// The SMS code.
    pub code: String,
}

/// `POST /set-password`.
#[derive(Debug, Deserialize)]
pub struct NewPassword {
    /// The new password.
    pub password: String,
}
