//! `vllm_drainable` against a small std-only HTTP stand-in for vLLM
//! (`/health`, `/metrics`) in running, idle, draining, unhealthy and
//! unreachable states, with the unit's state taken from `Facts`.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

mod common;

use common::stored;
use mode_guards::{
    advice, Facts, Guard, Outcome, UnitState, Verdict, VllmDrainable, VllmSettings, VLLM_DRAINABLE,
};

/// A stand-in vLLM: each `/metrics` answer takes the next queue state
/// (the last one repeats).
struct StandIn {
    port: u16,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl StandIn {
    fn start(health_status: u16, queue: &[(u32, u32)], chunked: bool) -> StandIn {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let states = Arc::new(Mutex::new(queue.iter().copied().collect::<VecDeque<_>>()));
        let stop_flag = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            // Bounded: at most 200 connections or until stopped.
            let mut served = 0;
            while !stop_flag.load(Ordering::Relaxed) && served < 200 {
                match listener.accept() {
                    Ok((stream, _)) => {
                        served += 1;
                        serve(stream, health_status, &states, chunked);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        StandIn {
            port,
            stop,
            thread: Some(thread),
        }
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for StandIn {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(
    mut stream: TcpStream,
    health_status: u16,
    states: &Mutex<VecDeque<(u32, u32)>>,
    chunked: bool,
) {
    stream.set_nonblocking(false).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let mut request = Vec::new();
    let mut buf = [0u8; 1024];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => request.extend_from_slice(&buf[..n]),
        }
    }
    let request = String::from_utf8_lossy(&request);
    let path = request.split_whitespace().nth(1).unwrap_or("/");
    let (status, body) = match path {
        "/health" => (health_status, String::new()),
        "/metrics" => {
            let mut s = states.lock().unwrap();
            let (running, waiting) = if s.len() > 1 {
                s.pop_front().unwrap()
            } else {
                s.front().copied().unwrap_or((0, 0))
            };
            (200, metrics_page(running, waiting))
        }
        _ => (404, "not found".into()),
    };
    let response = if chunked {
        let (a, b) = body.split_at(body.len() / 2);
        format!(
            "HTTP/1.1 {status} X\r\nTransfer-Encoding: chunked\r\nContent-Type: text/plain\r\n\r\n{:x}\r\n{a}\r\n{:x}\r\n{b}\r\n0\r\n\r\n",
            a.len(),
            b.len()
        )
    } else {
        format!(
            "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nContent-Type: text/plain\r\n\r\n{body}",
            body.len()
        )
    };
    let _ = stream.write_all(response.as_bytes());
}

fn metrics_page(running: u32, waiting: u32) -> String {
    format!(
        "# HELP vllm:num_requests_running Number of requests in model execution batches.\n\
         # TYPE vllm:num_requests_running gauge\n\
         vllm:num_requests_running{{engine=\"0\",model_name=\"llama-70b\"}} {running}.0\n\
         # HELP vllm:num_requests_waiting Number of requests waiting to be processed.\n\
         # TYPE vllm:num_requests_waiting gauge\n\
         vllm:num_requests_waiting{{engine=\"0\",model_name=\"llama-70b\"}} {waiting}.0\n\
         vllm:gpu_cache_usage_perc{{engine=\"0\",model_name=\"llama-70b\"}} 0.5\n"
    )
}

fn facts(active_state: &str) -> Facts {
    let mut f = Facts::new("desktop");
    f.unit_states = vec![UnitState {
        unit: "vllm.service".into(),
        id: "vllm.service".into(),
        load_state: "loaded".into(),
        active_state: active_state.into(),
        sub_state: "running".into(),
    }];
    f
}

fn check(endpoint: &str, drain_wait_secs: u64, facts: &Facts) -> Verdict {
    let s = VllmSettings {
        endpoint: endpoint.into(),
        scrape_interval_ms: 50,
        drain_wait_secs,
        request_timeout_ms: 500,
        ..VllmSettings::default()
    };
    VllmDrainable::new(&s).check(facts)
}

#[test]
fn fails_naming_running_and_waiting_requests() {
    let vllm = StandIn::start(200, &[(3, 1)], false);
    let v = check(&vllm.endpoint(), 0, &facts("active"));
    assert_eq!(v.outcome, Outcome::Fail, "{}", v.reason);
    assert_eq!(v.reason, "vLLM still has 3 running and 1 waiting requests");
    assert_eq!(v.evidence["running"], 3.0);
}

#[test]
fn passes_when_idle_on_two_consecutive_scrapes() {
    let vllm = StandIn::start(200, &[(0, 0)], true);
    let v = check(&vllm.endpoint(), 0, &facts("active"));
    assert_eq!(v.outcome, Outcome::Pass, "{}", v.reason);
    assert_eq!(v.evidence["scrapes"], 2);
}

#[test]
fn one_idle_scrape_is_not_enough() {
    let vllm = StandIn::start(200, &[(0, 0), (0, 2)], false);
    let v = check(&vllm.endpoint(), 0, &facts("active"));
    assert_eq!(v.outcome, Outcome::Fail, "{}", v.reason);
    assert!(v.reason.contains("0 running and 2 waiting"), "{}", v.reason);
}

#[test]
fn waits_for_the_queue_to_drain_within_the_drain_wait() {
    let vllm = StandIn::start(200, &[(2, 3), (1, 0), (0, 0)], false);
    let v = check(&vllm.endpoint(), 5, &facts("active"));
    assert_eq!(v.outcome, Outcome::Pass, "{}", v.reason);
    assert_eq!(v.evidence["scrapes"], 4);
}

#[test]
fn unreachable_while_the_unit_is_active_is_an_error() {
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let v = check(&format!("http://127.0.0.1:{port}"), 0, &facts("active"));
    assert_eq!(v.outcome, Outcome::Error);
    assert!(
        v.reason
            .starts_with("vllm.service is active but vLLM is unreachable"),
        "{}",
        v.reason
    );
}

#[test]
fn an_unhealthy_server_is_an_error() {
    let vllm = StandIn::start(503, &[(0, 0)], false);
    let v = check(&vllm.endpoint(), 0, &facts("active"));
    assert_eq!(v.outcome, Outcome::Error);
    assert!(v.reason.contains("HTTP 503"), "{}", v.reason);
}

#[test]
fn skipped_when_the_unit_is_not_active() {
    let v = check("http://127.0.0.1:9", 0, &facts("inactive"));
    assert_eq!(v.outcome, Outcome::Skipped);
    assert!(
        v.reason.contains("vllm.service is inactive"),
        "{}",
        v.reason
    );
}

#[test]
fn unreachable_with_an_ungathered_unit_state_is_an_error_saying_so() {
    let v = check("http://127.0.0.1:9", 0, &Facts::new("desktop"));
    assert_eq!(v.outcome, Outcome::Error);
    assert!(
        v.reason
            .contains("the state of vllm.service was not gathered"),
        "{}",
        v.reason
    );
}

#[test]
fn a_server_that_never_answers_is_cut_at_the_request_timeout() {
    // The kernel completes the connection from the backlog; nobody reads.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", silent.local_addr().unwrap());
    let started = std::time::Instant::now();
    let v = check(&endpoint, 0, &facts("active"));
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(v.outcome, Outcome::Error);
    assert!(v.reason.contains("no answer within 500 ms"), "{}", v.reason);
}

#[test]
fn the_advice_reads_the_queue_the_check_scraped() {
    let vllm = StandIn::start(200, &[(3, 1)], false);
    let r = stored(
        VLLM_DRAINABLE.name,
        check(&vllm.endpoint(), 0, &facts("active")),
    );
    assert_eq!(
        advice(&r).unwrap(),
        "wait for vLLM's 3 running and 1 waiting requests to finish (or stop sending them), or raise guard_settings.vllm.drain_wait_secs"
    );
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let r = stored(
        VLLM_DRAINABLE.name,
        check(&format!("http://127.0.0.1:{port}"), 0, &facts("active")),
    );
    assert_eq!(r.outcome, Outcome::Error);
    assert!(
        advice(&r).unwrap().contains("guard_settings.vllm.endpoint"),
        "{r:?}"
    );
}
