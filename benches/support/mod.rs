//! Shared by the benches that measure the broker binary from outside.

#![allow(dead_code, clippy::unwrap_used)]

use tokio::io::{AsyncBufReadExt, BufReader};

/// `minikafka broker` on an ephemeral port with its data in `data_dir`:
/// the child (killed on drop) and the address it logged.
pub async fn spawn_broker(data_dir: &std::path::Path) -> (tokio::process::Child, String) {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_minikafka"))
        .args(["broker", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let addr = loop {
        let line = lines.next_line().await.unwrap().unwrap();
        if let Some(rest) = line.split("addr=").nth(1) {
            break rest.split_whitespace().next().unwrap().to_string();
        }
    };
    // Keep draining its log so it never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, addr)
}
