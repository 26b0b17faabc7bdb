//! Shared pieces of the tests: an actix-web server on a loopback port, and checks of problem responses.
#![allow(dead_code, unreachable_pub, missing_docs)]

use std::net::TcpListener;
use std::thread::JoinHandle;

use actix_web::dev::ServerHandle;
use actix_web::{App, HttpServer, web};
use reqwest::{Response, StatusCode};
use serde_json::Value;

pub const HEADER: &str = "one-time-authorization-code";

/// An actix-web server on a loopback port, in a thread of its own with its own actix system.
pub struct TestServer {
    pub base: String,
    handle: ServerHandle,
    thread: Option<JoinHandle<()>>,
}

impl TestServer {
    pub fn start<F>(configure: F) -> Self
    where
        F: Fn(&mut web::ServiceConfig) + Send + Clone + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let base = format!("http://{}", listener.local_addr().expect("local addr"));
        let (tx, rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            actix_rt::System::new().block_on(async move {
                let server = HttpServer::new(move || App::new().configure(configure.clone()))
                    .workers(1)
                    .disable_signals()
                    .listen(listener)
                    .expect("listen")
                    .run();
                tx.send(server.handle()).expect("handle");
                server.await.expect("serve");
            });
        });
        let handle = rx.recv().expect("server started");
        Self {
            base,
            handle,
            thread: Some(thread),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn post(&self, path: &str, code: Option<&str>) -> Response {
        let mut req = reqwest::Client::new().post(self.url(path));
        if let Some(code) = code {
            req = req.header(HEADER, code);
        }
        req.send().await.expect("request")
    }

    /// A fresh code from the issuing resource `/a`.
    pub async fn code(&self) -> String {
        let res = self.post("/a", None).await;
        assert_eq!(res.status(), StatusCode::OK);
        code_of(&res)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        // The stop command is sent when `stop` is called; its future only waits for completion.
        drop(self.handle.stop(false));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

pub fn code_of(res: &Response) -> String {
    res.headers()
        .get(HEADER)
        .expect("a code header")
        .to_str()
        .expect("ascii")
        .to_owned()
}

pub async fn assert_problem(res: Response, status: StatusCode, code: &str) {
    assert_eq!(res.status(), status, "status for {code}");
    assert_eq!(res.headers()["content-type"], "application/problem+json");
    if status == StatusCode::UNAUTHORIZED {
        let www = res.headers()["www-authenticate"].to_str().expect("ascii");
        assert!(www.contains(code), "WWW-Authenticate names {code}: {www}");
    }
    assert!(
        res.headers().get(HEADER).is_none(),
        "a rejection issues no code"
    );
    let body: Value = res.json().await.expect("problem json");
    assert_eq!(body["code"], code);
    assert_eq!(body["status"], status.as_u16());
}
