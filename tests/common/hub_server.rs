//! A loopback server that speaks the hub's file endpoints (`/{repo}/resolve/{rev}/{file}`,
//! `/datasets/{repo}/resolve/{rev}/{file}`): Range requests, ETag / X-Linked-Etag (SHA-256 for
//! large files, as for LFS), X-Repo-Commit, 404 for missing files. Files can be made to drop the
//! connection half-way on their first full download, to test resuming.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::Read;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

pub const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

#[derive(Clone)]
pub struct File {
    pub bytes: Vec<u8>,
    /// Drop the connection after half the body on the first full download.
    pub cut_first: bool,
    /// Serve these bytes instead (a corrupted mirror), keeping the ETag of `bytes`.
    pub served: Option<Vec<u8>>,
}

impl File {
    pub fn new(bytes: Vec<u8>) -> Self {
        Self {
            bytes,
            cut_first: false,
            served: None,
        }
    }
}

#[derive(Default)]
pub struct Log {
    /// (path, Range header, Authorization header)
    pub requests: Vec<(String, Option<String>, Option<String>)>,
}

pub struct HubServer {
    pub url: String,
    pub log: Arc<Mutex<Log>>,
    server: Arc<tiny_http::Server>,
    thread: Option<std::thread::JoinHandle<()>>,
}

fn sha256_hex(b: &[u8]) -> String {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    h.update(b);
    h.finalize().iter().map(|x| format!("{x:02x}")).collect()
}

struct Cut {
    data: Vec<u8>,
    pos: usize,
    stop: usize,
}

impl Read for Cut {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.pos >= self.stop {
            return Err(std::io::Error::new(
                std::io::ErrorKind::ConnectionReset,
                "cut",
            ));
        }
        let n = buf.len().min(self.stop - self.pos);
        buf[..n].copy_from_slice(&self.data[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

impl HubServer {
    /// `files`: URL path (e.g. `/org/name/resolve/main/config.json`) → file.
    pub fn start(files: HashMap<String, File>) -> Self {
        let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").unwrap());
        let url = format!("http://{}", server.server_addr().to_ip().unwrap());
        let log = Arc::new(Mutex::new(Log::default()));
        let cut_done = Arc::new(AtomicUsize::new(0));
        let (s, l) = (server.clone(), log.clone());
        let thread = std::thread::spawn(move || {
            for req in s.incoming_requests() {
                let path = req.url().split('?').next().unwrap_or("").to_string();
                let header = |name: &str| {
                    req.headers()
                        .iter()
                        .find(|h| h.field.as_str().as_str().eq_ignore_ascii_case(name))
                        .map(|h| h.value.as_str().to_string())
                };
                let range = header("Range");
                l.lock().unwrap().requests.push((
                    path.clone(),
                    range.clone(),
                    header("Authorization"),
                ));
                if let Some(api) = path.strip_prefix("/api/") {
                    // The repository-info API: `/api/{models|datasets}/{repo}/revision/{rev}`
                    // lists the files served under that repository's resolve URLs.
                    let listing = api.split_once("/revision/").map(|(repo, rev)| {
                        let prefix = match repo.strip_prefix("models/") {
                            Some(r) => format!("/{r}/resolve/{rev}/"),
                            None => format!("/{repo}/resolve/{rev}/"),
                        };
                        let mut names: Vec<&str> = files
                            .keys()
                            .filter_map(|k| k.strip_prefix(&prefix))
                            .collect();
                        names.sort();
                        names
                    });
                    let resp = match listing {
                        Some(names) if !names.is_empty() => {
                            let siblings: Vec<String> = names
                                .iter()
                                .map(|n| format!("{{\"rfilename\":\"{n}\"}}"))
                                .collect();
                            tiny_http::Response::from_string(format!(
                                "{{\"sha\":\"{COMMIT}\",\"siblings\":[{}]}}",
                                siblings.join(",")
                            ))
                        }
                        _ => tiny_http::Response::from_string("Repository not found")
                            .with_status_code(404),
                    };
                    let _ = req.respond(resp);
                    continue;
                }
                let Some(f) = files.get(&path) else {
                    let _ = req.respond(
                        tiny_http::Response::from_string("Entry not found").with_status_code(404),
                    );
                    continue;
                };
                let body = f.served.clone().unwrap_or_else(|| f.bytes.clone());
                let total = body.len();
                let mut headers = vec![
                    tiny_http::Header::from_bytes("X-Repo-Commit", COMMIT).unwrap(),
                    tiny_http::Header::from_bytes(
                        "ETag",
                        format!("\"{}\"", &sha256_hex(path.as_bytes())[..40]),
                    )
                    .unwrap(),
                    tiny_http::Header::from_bytes("Accept-Ranges", "bytes").unwrap(),
                ];
                if f.bytes.len() > 1000 {
                    headers.push(
                        tiny_http::Header::from_bytes(
                            "X-Linked-Etag",
                            format!("\"{}\"", sha256_hex(&f.bytes)),
                        )
                        .unwrap(),
                    );
                }
                let start = range
                    .as_deref()
                    .and_then(|r| r.strip_prefix("bytes="))
                    .and_then(|r| r.split('-').next())
                    .and_then(|s| s.parse::<usize>().ok());
                let probe = range.as_deref() == Some("bytes=0-0");
                let (status, data, from) = match (probe, start) {
                    (true, _) => (206, body[..1.min(total)].to_vec(), 0),
                    (false, Some(s)) => (206, body[s.min(total)..].to_vec(), s),
                    (false, None) => (200, body.clone(), 0),
                };
                if status == 206 {
                    let end = if probe { 0 } else { total.saturating_sub(1) };
                    headers.push(
                        tiny_http::Header::from_bytes(
                            "Content-Range",
                            format!("bytes {from}-{end}/{total}"),
                        )
                        .unwrap(),
                    );
                }
                let len = data.len();
                let cut = f.cut_first
                    && !probe
                    && from == 0
                    && cut_done.fetch_add(1, Ordering::SeqCst) == 0;
                let reader: Box<dyn Read + Send> = if cut {
                    Box::new(Cut {
                        data,
                        pos: 0,
                        stop: len / 2,
                    })
                } else {
                    Box::new(std::io::Cursor::new(data))
                };
                let resp = tiny_http::Response::new(
                    tiny_http::StatusCode(status),
                    headers,
                    reader,
                    Some(len),
                    None,
                );
                let _ = req.respond(resp);
            }
        });
        Self {
            url,
            log,
            server,
            thread: Some(thread),
        }
    }

    pub fn count(&self) -> usize {
        self.log.lock().unwrap().requests.len()
    }
}

impl Drop for HubServer {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
