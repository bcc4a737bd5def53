//! `conclab-kernel kernel` spoken to over the real Jupyter protocol (ZeroMQ, signed
//! messages), as a Jupyter client would: every failure is an `error` reply with `ename`,
//! `evalue` and `traceback`, and everything a cell prints comes before its `idle`.
//!
//! Needs `conclab-kernel setup` first (it writes the `init.evcxr` the kernel loads).

#![allow(dead_code)]

#[path = "support/test_kernel.rs"]
mod test_kernel;

use serde_json::{json, Value};
use std::time::{Duration, Instant};
use test_kernel::{TestKernel, AFTER_IDLE};

/// One kernel for the whole session of cells, as a notebook would use it: each failure
/// kind in turn, with the variables evcxr keeps checked in between.
#[test]
fn every_failure_is_an_error_in_its_own_cell_and_state_survives_where_evcxr_keeps_it() {
    let mut kernel = TestKernel::start();

    // Heartbeat answers while the kernel is idle.
    kernel.heartbeat.send("ping", 0).unwrap();
    kernel.heartbeat.set_rcvtimeo(5000).unwrap();
    assert_eq!(kernel.heartbeat.recv_bytes(0).unwrap(), b"ping");

    kernel.execute("let kept = 41;").assert_ok();

    let answer =
        kernel.execute("println!(\"before\");\nassert_eq!(kept + 1, 43, \"arithmetic is off\");");
    let text = answer.assert_error("Panic");
    assert!(text.contains("arithmetic is off"), "{text}");
    assert!(text.contains("line 2 of this cell"), "{text}");
    assert!(!text.contains("src/lib.rs"), "{text}");
    assert_eq!(answer.text("stdout"), "before\n");
    assert!(
        !answer.text("stderr").contains("panicked"),
        "the panic is the error, not stream text: {:?}",
        answer.text("stderr")
    );

    // evcxr keeps the variables of earlier cells after a panic.
    let answer = kernel.execute("println!(\"{}\", kept + 1);");
    answer.assert_ok();
    assert_eq!(answer.text("stdout"), "42\n");

    let answer = kernel.execute("let n: i32 = \"4x\".parse()?;\nprintln!(\"never {n}\");");
    let text = answer.assert_error("Err");
    assert!(text.contains("invalid digit found in string"), "{text}");
    assert!(answer.text("stdout").is_empty());

    let answer = kernel.execute("let x: i32 = \"text\";");
    let text = answer.assert_error("CompileError");
    assert!(text.contains("mismatched types"), "{text}");
    assert!(text.contains("line 1 of this cell"), "{text}");

    let answer = kernel.execute("eprintln!(\"to stderr\");\nprintln!(\"to stdout\");");
    answer.assert_ok();
    assert_eq!(answer.text("stderr"), "to stderr\n");
    assert_eq!(answer.text("stdout"), "to stdout\n");

    // A rich result carries text/plain beside its HTML.
    let answer = kernel.execute(
        "struct T;\nimpl T { fn evcxr_display(&self) { println!(\"EVCXR_BEGIN_CONTENT text/html\\n<b>bold</b>\\nEVCXR_END_CONTENT\"); } }\nT",
    );
    answer.assert_ok();
    let result = answer.result().expect("an execute_result");
    assert_eq!(result["text/html"], "<b>bold</b>");
    assert_eq!(result["text/plain"], "bold");

    // Plain values print as evcxr's `{:?}` prints them (the kernel's quick display); a
    // box around a value with its own display still reaches it through Deref; after
    // `:fmt`, evcxr's fallback formats again.
    let plain = |kernel: &mut TestKernel, code: &str| {
        let answer = kernel.execute(code);
        answer.assert_ok();
        answer
            .result()
            .unwrap_or_else(|| panic!("no execute_result for {code}"))
            .clone()
    };
    assert_eq!(plain(&mut kernel, "kept + 1")["text/plain"], "42");
    assert_eq!(plain(&mut kernel, "\"hi\"")["text/plain"], "\"hi\"");
    assert_eq!(
        plain(&mut kernel, "(Some(1u8), vec![2.5])")["text/plain"],
        "(Some(1), [2.5])"
    );
    assert_eq!(
        plain(&mut kernel, "Box::new(T)")["text/html"],
        "<b>bold</b>"
    );
    kernel.execute(":fmt {:#?}").assert_ok();
    assert_eq!(plain(&mut kernel, "vec![1]")["text/plain"], "[\n    1,\n]");
    kernel.execute(":fmt {:?}").assert_ok();

    // Completion comes from evcxr's rust-analyzer.
    let completion = kernel
        .request_on_shell(
            "complete_request",
            json!({"code": "kep", "cursor_pos": 3}),
            Duration::from_secs(60),
        )
        .expect("a complete_reply");
    let matches: Vec<&str> = completion.reply["matches"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(matches.contains(&"kept"), "{matches:?}");
    assert_eq!(completion.reply["cursor_start"], 0);

    let is_complete = kernel
        .request_on_shell(
            "is_complete_request",
            json!({"code": "fn f() {"}),
            Duration::from_secs(10),
        )
        .unwrap();
    assert_eq!(is_complete.reply["status"], "incomplete");

    // An endless cell stops within 2 s of the interrupt; its variables are gone.
    let id = kernel
        .session
        .send(&kernel.shell, "execute_request", json!({"code": "loop { std::thread::sleep(std::time::Duration::from_millis(10)); }", "silent": false, "store_history": true, "user_expressions": {}, "allow_stdin": false, "stop_on_error": false}))
        .unwrap();
    std::thread::sleep(Duration::from_secs(3));
    let interrupt = kernel
        .session
        .send(&kernel.control, "interrupt_request", json!({}))
        .unwrap();
    let interrupted_at = Instant::now();
    let answer = kernel
        .collect(&id, Duration::from_secs(2) + AFTER_IDLE, false)
        .expect("the cell ended after the interrupt");
    assert!(interrupted_at.elapsed() < Duration::from_secs(2) + AFTER_IDLE);
    let text = answer.assert_error("Interrupted");
    assert!(
        text.contains("`kept`"),
        "the lost variables are named: {text}"
    );
    let _ = interrupt;

    // Later cells run in a fresh process.
    kernel.execute("let again = 1;").assert_ok();

    let answer = kernel.execute("std::process::exit(3);");
    let text = answer.assert_error("ProcessDied");
    assert!(text.contains("exited with status 3"), "{text}");
    assert!(text.contains("`again`"), "{text}");

    // Run All: after a failure, cells already queued are aborted, not run.
    let failing = kernel.session.send(&kernel.shell, "execute_request", json!({"code": "panic!(\"stop here\");", "silent": false, "store_history": true, "user_expressions": {}, "allow_stdin": false, "stop_on_error": true})).unwrap();
    let queued = kernel.session.send(&kernel.shell, "execute_request", json!({"code": "println!(\"must not run\");", "silent": false, "store_history": true, "user_expressions": {}, "allow_stdin": false, "stop_on_error": true})).unwrap();
    kernel
        .collect(&failing, Duration::from_secs(60), false)
        .unwrap()
        .assert_error("Panic");
    let aborted = kernel
        .collect(&queued, Duration::from_secs(10), false)
        .unwrap();
    assert_eq!(aborted.reply["status"], "aborted");
    // JupyterLab would show a count in the aborted cell's prompt, as if it had run.
    assert!(
        aborted.reply.get("execution_count").is_none(),
        "{}",
        aborted.reply
    );
    assert!(aborted.text("stdout").is_empty());

    // Shutdown with restart: the kernel answers, then its process ends.
    let id = kernel
        .session
        .send(
            &kernel.control,
            "shutdown_request",
            json!({"restart": true}),
        )
        .unwrap();
    let answer = kernel
        .collect(&id, Duration::from_secs(10), true)
        .expect("a shutdown_reply");
    assert_eq!(answer.reply["restart"], true);
    let start = Instant::now();
    while kernel.child.try_wait().unwrap().is_none() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the kernel did not exit after shutdown"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
