//! A small QMP client (QEMU Machine Protocol, newline-delimited JSON over a Unix socket).
//!
//! One connection per command: read the greeting, negotiate capabilities, execute, and
//! match the reply by our own `id` (asynchronous `event` lines interleave with replies).

use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

/// Executes `command` with `arguments` on the QMP socket at `socket`.
pub async fn execute(
    socket: &Path,
    command: &str,
    arguments: Option<Value>,
    timeout: Duration,
) -> Result<Value, String> {
    tokio::time::timeout(timeout, execute_inner(socket, command, arguments))
        .await
        .map_err(|_| format!("QMP {command} timed out after {timeout:?}"))?
}

async fn execute_inner(
    socket: &Path,
    command: &str,
    arguments: Option<Value>,
) -> Result<Value, String> {
    let stream = UnixStream::connect(socket)
        .await
        .map_err(|e| format!("QMP connect {}: {e}", socket.display()))?;
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read).lines();
    let greeting = next_json(&mut lines).await?;
    if greeting.get("QMP").is_none() {
        return Err(format!("unexpected QMP greeting: {greeting}"));
    }
    send(
        &mut write,
        &json!({"execute": "qmp_capabilities", "id": "caps"}),
    )
    .await?;
    wait_reply(&mut lines, "caps").await?;
    let mut message = json!({"execute": command, "id": "cmd"});
    if let Some(arguments) = arguments {
        message["arguments"] = arguments;
    }
    send(&mut write, &message).await?;
    wait_reply(&mut lines, "cmd").await
}

async fn send(write: &mut tokio::net::unix::OwnedWriteHalf, message: &Value) -> Result<(), String> {
    let mut line = message.to_string();
    line.push('\n');
    write
        .write_all(line.as_bytes())
        .await
        .map_err(|e| format!("QMP write: {e}"))
}

async fn next_json(
    lines: &mut tokio::io::Lines<BufReader<tokio::net::unix::OwnedReadHalf>>,
) -> Result<Value, String> {
    match lines.next_line().await {
        Ok(Some(line)) => {
            serde_json::from_str(&line).map_err(|e| format!("QMP bad JSON {line:?}: {e}"))
        }
        Ok(None) => Err("QMP connection closed".into()),
        Err(e) => Err(format!("QMP read: {e}")),
    }
}

async fn wait_reply(
    lines: &mut tokio::io::Lines<BufReader<tokio::net::unix::OwnedReadHalf>>,
    id: &str,
) -> Result<Value, String> {
    loop {
        let message = next_json(lines).await?;
        if message.get("id").and_then(Value::as_str) != Some(id) {
            continue; // an event
        }
        if let Some(ret) = message.get("return") {
            return Ok(ret.clone());
        }
        return Err(format!(
            "QMP error: {}",
            message.get("error").unwrap_or(&message)
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake QMP server: greeting, capabilities, one event, then the reply.
    #[tokio::test]
    async fn replies_are_matched_by_id_and_events_skipped() {
        let dir = std::env::temp_dir().join(format!("qmp-test-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join("q.sock");
        let _ = std::fs::remove_file(&path);
        let listener = tokio::net::UnixListener::bind(&path).unwrap();
        tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            let (read, mut write) = stream.into_split();
            let mut lines = BufReader::new(read).lines();
            write
                .write_all(b"{\"QMP\": {\"version\": {}}}\n")
                .await
                .unwrap();
            lines.next_line().await.unwrap();
            write
                .write_all(b"{\"return\": {}, \"id\": \"caps\"}\n")
                .await
                .unwrap();
            lines.next_line().await.unwrap();
            write.write_all(b"{\"event\": \"RESUME\"}\n").await.unwrap();
            write
                .write_all(b"{\"return\": {\"status\": \"running\"}, \"id\": \"cmd\"}\n")
                .await
                .unwrap();
        });
        let ret = execute(&path, "query-status", None, Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(ret["status"], "running");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
