//! An EC2 Query API client: form-encoded POST, signed with SigV4 (`aws-sigv4`) or SigV2
//! (`crate::sigv2`) as the dialect says, throttling
//! and server errors retried with jittered exponential backoff, replies parsed into
//! [`Element`]s, and the endpoint's errors mapped to plugin error codes. The endpoint's
//! own error text is logged, never passed on: callers see the plugin's messages.

use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use skyport_plugin_api::abi::error_code;
use skyport_plugin_api::PluginError;

use crate::xml::{self, Element};

/// How requests are signed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signing {
    /// AWS Signature Version 4 (EC2 today).
    V4,
    /// AWS Signature Version 2, `HmacSHA256` (Eucalyptus, euca2ools 3.x).
    V2,
}

/// Attempts per call (the first and up to three retries).
const ATTEMPTS: u32 = 4;
/// Backoff before the first retry; doubled each time, with jitter.
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// Deadline of one HTTP exchange.
const HTTP_TIMEOUT: Duration = Duration::from_secs(20);

/// Access key and secret for the endpoint.
#[derive(Clone)]
pub struct Secret {
    /// Access key id.
    pub access_key_id: String,
    /// Secret access key (never logged: `Debug` hides it).
    pub secret_access_key: String,
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Secret")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<hidden>")
            .finish()
    }
}

/// A client for one endpoint and region.
pub struct Ec2Client {
    http: reqwest::Client,
    /// Full URL of the service (endpoint and path).
    url: reqwest::Url,
    region: String,
    secret: Secret,
    signing: Signing,
    api_version: String,
}

/// An error reply from the endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteError {
    /// HTTP status.
    pub status: u16,
    /// EC2 error code (`InternalError` when the body had none).
    pub code: String,
    /// The endpoint's message (for logs only).
    pub message: String,
}

impl RemoteError {
    fn retryable(&self) -> bool {
        self.status >= 500
            || matches!(
                self.code.as_str(),
                "RequestLimitExceeded" | "Throttling" | "ThrottlingException"
            )
    }

    /// The plugin error a caller sees for this reply to `action`.
    pub fn to_plugin_error(&self, action: &str) -> PluginError {
        let code = self.code.as_str();
        let (kind, message) = match code {
            c if c.starts_with("InvalidInstanceID") => (
                error_code::NOT_FOUND,
                "the instance does not exist at the provider".to_string(),
            ),
            "IncorrectInstanceState" | "IncorrectState" => (
                error_code::CONFLICT,
                "the provider refused: the instance is not in a state that allows this".to_string(),
            ),
            "InstanceLimitExceeded" | "VcpuLimitExceeded" | "InsufficientInstanceCapacity" => (
                error_code::LIMIT_EXCEEDED,
                "the provider has no capacity or quota left for this".to_string(),
            ),
            "RequestLimitExceeded" | "Throttling" | "ThrottlingException" => (
                error_code::THROTTLED,
                "the provider is throttling requests".to_string(),
            ),
            "AuthFailure"
            | "UnauthorizedOperation"
            | "SignatureDoesNotMatch"
            | "InvalidClientTokenId"
            | "OptInRequired" => (
                error_code::UNAVAILABLE,
                "the provider refused Skyport's credentials".to_string(),
            ),
            c if c.starts_with("InvalidAMIID") => (
                error_code::INVALID_INPUT,
                "the provider does not know this image".to_string(),
            ),
            c if c.starts_with("Invalid") || c == "MissingParameter" || c == "UnknownParameter" => {
                (
                    error_code::INVALID_INPUT,
                    format!("the provider rejected the {action} request ({code})"),
                )
            }
            _ => (
                error_code::UNAVAILABLE,
                format!("the provider failed to serve {action}"),
            ),
        };
        let err = PluginError::new(kind, message);
        if self.retryable() {
            err.retryable()
        } else {
            err
        }
    }
}

/// Why a call failed.
#[derive(Debug)]
pub enum CallError {
    /// The endpoint answered with an error.
    Remote(RemoteError),
    /// No usable answer (connection, timeout, unreadable reply).
    Transport(String),
}

impl CallError {
    /// The plugin error for a failed `action`.
    pub fn to_plugin_error(&self, action: &str) -> PluginError {
        match self {
            Self::Remote(r) => r.to_plugin_error(action),
            Self::Transport(_) => PluginError::new(
                error_code::UNAVAILABLE,
                format!("the provider could not be reached for {action}"),
            )
            .retryable(),
        }
    }
}

impl Ec2Client {
    /// A client for the service at `endpoint` + `path` (e.g.
    /// `https://ec2.us-east-1.amazonaws.com` + `/`) in `region`, speaking `api_version`
    /// signed with `signing`.
    pub fn new(
        endpoint: &str,
        path: &str,
        region: &str,
        secret: Secret,
        signing: Signing,
        api_version: &str,
    ) -> Result<Self, String> {
        let http = reqwest::Client::builder()
            .timeout(HTTP_TIMEOUT)
            .build()
            .map_err(|e| format!("HTTP client: {e}"))?;
        let mut url =
            reqwest::Url::parse(endpoint).map_err(|e| format!("endpoint {endpoint}: {e}"))?;
        if url.host_str().is_none() {
            return Err(format!("endpoint {endpoint}: no host"));
        }
        url.set_path(path);
        Ok(Self {
            http,
            url,
            region: region.to_string(),
            secret,
            signing,
            api_version: api_version.to_string(),
        })
    }

    /// Calls `action` with `params`, retrying throttling and server errors; a failure is
    /// logged as a warning.
    pub async fn call(
        &self,
        action: &str,
        params: &[(String, String)],
    ) -> Result<Element, CallError> {
        self.call_logged(action, params, log::Level::Warn).await
    }

    /// [`Ec2Client::call`] for a call whose failure the caller expects and handles (an
    /// optional action the cloud may not serve, an "already exists" answer): a failure is
    /// logged at debug level only.
    pub async fn try_call(
        &self,
        action: &str,
        params: &[(String, String)],
    ) -> Result<Element, CallError> {
        self.call_logged(action, params, log::Level::Debug).await
    }

    async fn call_logged(
        &self,
        action: &str,
        params: &[(String, String)],
        failure_level: log::Level,
    ) -> Result<Element, CallError> {
        let mut backoff = FIRST_BACKOFF;
        let mut attempt = 1;
        loop {
            let result = self.call_once(action, params).await;
            let retry = match &result {
                Ok(_) => false,
                Err(CallError::Remote(r)) => r.retryable(),
                Err(CallError::Transport(_)) => true,
            };
            if !retry || attempt == ATTEMPTS {
                if let Err(e) = &result {
                    log::log!(
                        failure_level,
                        "ec2: {action} failed after {attempt} attempt(s): {e:?}"
                    );
                }
                return result;
            }
            let jitter = rand::random_range(0..=backoff.as_millis() as u64 / 2);
            tokio::time::sleep(backoff + Duration::from_millis(jitter)).await;
            backoff *= 2;
            attempt += 1;
        }
    }

    async fn call_once(
        &self,
        action: &str,
        params: &[(String, String)],
    ) -> Result<Element, CallError> {
        let mut pairs: Vec<(String, String)> = Vec::with_capacity(params.len() + 7);
        pairs.push(("Action".into(), action.into()));
        pairs.push(("Version".into(), self.api_version.clone()));
        pairs.extend(params.iter().cloned());
        let host = match (self.url.host_str(), self.url.port()) {
            (Some(h), Some(p)) => format!("{h}:{p}"),
            (Some(h), None) => h.to_string(),
            (None, _) => return Err(CallError::Transport("endpoint has no host".into())),
        };
        let content_type = "application/x-www-form-urlencoded; charset=utf-8";
        let mut request = self
            .http
            .post(self.url.clone())
            .header("content-type", content_type);
        let body = match self.signing {
            Signing::V2 => {
                let timestamp = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
                crate::sigv2::sign(
                    "POST",
                    &host,
                    self.url.path(),
                    &mut pairs,
                    &self.secret.access_key_id,
                    &self.secret.secret_access_key,
                    &timestamp,
                );
                crate::sigv2::canonical_query(&pairs)
            }
            Signing::V4 => {
                let body = crate::sigv2::canonical_query(&pairs);
                for (name, value) in self.sigv4_headers(&host, content_type, &body)? {
                    request = request.header(name, value);
                }
                body
            }
        };
        let response = request
            .body(body)
            .send()
            .await
            .map_err(|e| CallError::Transport(e.to_string()))?;
        let status = response.status().as_u16();
        let text = response
            .text()
            .await
            .map_err(|e| CallError::Transport(e.to_string()))?;
        if (200..300).contains(&status) {
            return xml::parse(&text).map_err(|e| CallError::Transport(format!("reply: {e}")));
        }
        Err(CallError::Remote(parse_error(status, &text)))
    }

    /// The headers SigV4 adds (`authorization`, `x-amz-date`) for a POST of `body`.
    fn sigv4_headers(
        &self,
        host: &str,
        content_type: &str,
        body: &str,
    ) -> Result<Vec<(String, String)>, CallError> {
        let signing_error =
            |e: &dyn std::fmt::Display| CallError::Transport(format!("signing: {e}"));
        let headers = [("content-type", content_type), ("host", host)];
        let identity: Identity = Credentials::new(
            &self.secret.access_key_id,
            &self.secret.secret_access_key,
            None,
            None,
            "skyport-ec2",
        )
        .into();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.region)
            .name("ec2")
            .time(SystemTime::now())
            .settings(SigningSettings::default())
            .build()
            .map_err(|e| signing_error(&e))?
            .into();
        let signable = SignableRequest::new(
            "POST",
            self.url.as_str(),
            headers.iter().copied(),
            SignableBody::Bytes(body.as_bytes()),
        )
        .map_err(|e| signing_error(&e))?;
        let (instructions, _) = sign(signable, &params)
            .map_err(|e| signing_error(&e))?
            .into_parts();
        Ok(instructions
            .headers()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect())
    }
}

/// The code and message of an error reply (`<Response><Errors><Error>`), or
/// `InternalError` with the status when the body is not EC2's envelope.
pub fn parse_error(status: u16, body: &str) -> RemoteError {
    let parsed = xml::parse(body).ok();
    let error = parsed
        .as_ref()
        .and_then(|doc| doc.at("Errors/Error").or_else(|| doc.at("Error")));
    RemoteError {
        status,
        code: error
            .and_then(|e| e.text_at("Code"))
            .unwrap_or("InternalError")
            .to_string(),
        message: error
            .and_then(|e| e.text_at("Message"))
            .unwrap_or("no EC2 error in the reply")
            .chars()
            .take(300)
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_replies_map_to_plugin_codes_without_the_remote_text() {
        let moto = r#"<?xml version="1.0" encoding="utf-8"?>
<Response><Errors><Error><Code>InvalidInstanceID.NotFound</Code><Message>The instance ID 'i-00000000000000000' does not exist</Message></Error></Errors><RequestID>request-id</RequestID></Response>"#;
        let err = parse_error(400, moto);
        assert_eq!(err.code, "InvalidInstanceID.NotFound");
        let plugin = err.to_plugin_error("DescribeInstances");
        assert_eq!(plugin.code.as_str(), error_code::NOT_FOUND);
        assert!(!plugin.message.as_str().contains("i-0000"));

        let throttled = parse_error(
            503,
            "<Response><Errors><Error><Code>RequestLimitExceeded</Code><Message>x</Message></Error></Errors></Response>",
        );
        assert!(throttled.retryable());
        assert!(throttled.to_plugin_error("RunInstances").retryable);

        let html = parse_error(500, "<html><body>Internal Server Error</body></html>");
        assert_eq!(html.code, "InternalError");
        assert!(html.retryable());
        let bad = parse_error(400, "<Response><Errors><Error><Code>InvalidParameterValue</Code><Message>secret detail</Message></Error></Errors></Response>");
        let plugin = bad.to_plugin_error("RunInstances");
        assert_eq!(plugin.code.as_str(), error_code::INVALID_INPUT);
        assert!(!plugin.message.as_str().contains("secret detail"));
    }

    #[test]
    fn secrets_stay_out_of_debug_output() {
        let s = Secret {
            access_key_id: "AKID".into(),
            secret_access_key: "hunter2".into(),
        };
        assert!(!format!("{s:?}").contains("hunter2"));
    }
}
