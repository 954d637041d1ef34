//! A server that accepts connections and never answers (or stops half-way through a body) ends
//! `fetch`, `inpaint` and weight downloads with one message naming the host, after the
//! `I2I_UNLEARN_NET_TIMEOUT` limit and a bounded number of tries, instead of hanging forever.

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::{Duration, Instant};

/// A server on 127.0.0.1 that accepts every connection and, after reading the request, sends
/// `reply` (possibly nothing) and then nothing more, holding the connection open.
fn stalling_server(reply: &'static [u8]) -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut held = vec![];
        for s in l.incoming().flatten() {
            let mut s = s;
            let mut buf = [0u8; 4096];
            let _ = s.set_read_timeout(Some(Duration::from_millis(200)));
            let _ = s.read(&mut buf);
            let _ = s.write_all(reply);
            held.push(s);
        }
    });
    format!("http://{addr}")
}

fn run_against(endpoint: &str, args: &[&str], dir: &std::path::Path) -> (Option<i32>, String, f64) {
    let t = Instant::now();
    let o = std::process::Command::new(common::bin())
        .args(args)
        .current_dir(dir)
        .env("HF_HOME", dir.join("hf"))
        .env("HF_ENDPOINT", endpoint)
        .env("HF_HUB_OFFLINE", "0")
        .env("I2I_UNLEARN_CACHE", dir.join("cache"))
        .env("I2I_UNLEARN_NET_TIMEOUT", "1")
        .output()
        .unwrap();
    (
        o.status.code(),
        common::stderr(&o),
        t.elapsed().as_secs_f64(),
    )
}

#[test]
fn a_silent_hub_ends_inpaint_and_fetch_with_the_host_named() {
    let endpoint = stalling_server(b"");
    let host = endpoint.trim_start_matches("http://").to_string();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir(d.join("imgs")).unwrap();
    image::RgbImage::new(16, 16)
        .save(d.join("imgs/a.png"))
        .unwrap();
    let (code, err, secs) = run_against(
        &endpoint,
        &[
            "inpaint",
            "--model",
            "owner/silent",
            "--images",
            "imgs",
            "--out",
            "out",
        ],
        d,
    );
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains(&host) && err.contains("no answer"), "{err}");
    assert!(err.contains("I2I_UNLEARN_NET_TIMEOUT"), "{err}");
    assert!(secs < 30.0, "took {secs:.0} s");

    let exp = common::write(
        d,
        "hub.yaml",
        &common::tiny_yaml("hub", "")
            .lines()
            .filter(|l| {
                !l.starts_with("    config: {image_size") && !l.starts_with("    pretrain:")
            })
            .map(|l| match l {
                "    family: mae" => "    family: mae\n    weights: owner/silent".to_string(),
                l => l.to_string(),
            })
            .collect::<Vec<_>>()
            .join("\n"),
    );
    let (code, err, secs) = run_against(&endpoint, &["fetch", exp.to_str().unwrap()], d);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains(&host) && err.contains("no answer"), "{err}");
    assert!(secs < 30.0, "took {secs:.0} s");
}

#[test]
fn a_download_that_stalls_half_way_ends_and_keeps_its_part() {
    // Headers promise 1000 bytes; 10 arrive, then nothing.
    let endpoint = stalling_server(
        b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\nContent-Type: application/octet-stream\r\n\r\n0123456789",
    );
    std::env::set_var("I2I_UNLEARN_NET_TIMEOUT", "1");
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("w.pth");
    let t = Instant::now();
    let e = i2i_unlearn::weights::download_verified(&format!("{endpoint}/w.pth"), "00", &dest)
        .unwrap_err();
    let m = i2i_unlearn::error::one_line(&e);
    assert!(
        m.contains(endpoint.trim_start_matches("http://")) && m.contains("no answer"),
        "{m}"
    );
    assert!(t.elapsed().as_secs_f64() < 30.0);
    assert!(!dest.exists());
    let part = dir.path().join("w.pth.part");
    assert_eq!(
        std::fs::metadata(part).unwrap().len(),
        10,
        "the bytes that came are kept"
    );
}
