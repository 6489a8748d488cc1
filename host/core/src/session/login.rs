//! `Login`: authenticates the session as a registered number, joins the directory, and
//! checks the key again once there (a re-registration may have revoked it in between).

use hotline_protocol::{close_code, is_e164, ServerFrame};

use super::{Output, Session, Stage};
use crate::close::Close;
use crate::credentials::hash_key;
use crate::ports::{Accounts, Ports, StorageFailure};
use crate::text::quote;
use crate::window::DeliveryWindow;

/// Why a login was refused; the session is closed with it.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    /// No such account, or the key is wrong or revoked.
    #[error("{0}")]
    Refused(String),
    /// Storage failed.
    #[error("storage is unavailable")]
    Storage(#[from] StorageFailure),
}

/// Checks `key` against the stored hash for `phone`.
pub fn check(accounts: &dyn Accounts, phone: &str, key: &str) -> Result<(), LoginError> {
    if !is_e164(phone) {
        return Err(LoginError::Refused(format!("{} is not an E.164 number", quote(phone))));
    }
    let Some(account) = accounts.account(phone)? else {
        return Err(LoginError::Refused(format!("{phone} is not registered")));
    };
    if account.key_hash != hash_key(key) {
        return Err(LoginError::Refused("wrong or revoked key; register this device again".into()));
    }
    Ok(())
}

impl Session {
    pub(super) fn login(&mut self, phone: String, key: String, ports: &Ports<'_>) {
        if let Err(e) = check(ports.accounts, &phone, &key) {
            let code = match e {
                LoginError::Refused(_) => close_code::AUTH_FAILED,
                LoginError::Storage(_) => close_code::INTERNAL,
            };
            return self.close(Close::new(code, e.to_string()));
        }
        let replaces = Close::new(close_code::SESSION_REPLACED, "logged in on a newer connection");
        self.outputs.push_back(Output::Register { phone: phone.clone(), replaces });
        self.registered = Some(phone.clone());
        self.stage = Stage::LoggingIn { phone, key };
    }

    /// The directory holds the session: check the key again, then go online.
    pub(super) fn registered(&mut self, ports: &Ports<'_>) {
        let Stage::LoggingIn { phone, key } = std::mem::replace(&mut self.stage, Stage::Anonymous) else { return };
        if let Err(e) = check(ports.accounts, &phone, &key) {
            return self.close(Close::new(close_code::AUTH_FAILED, e.to_string()));
        }
        tracing::debug!(%phone, "logged in");
        self.answers.ready(ServerFrame::LoggedIn { phone: phone.clone() });
        let key_hash = hash_key(&key);
        self.stage = Stage::Online { phone, key_hash, window: DeliveryWindow::new(self.config.delivery_window) };
    }
}
