//! The `cairn` binary: `cairn serve` and the command-line tools.

fn main() -> anyhow::Result<()> {
    anyhow::bail!("usage: cairn serve (the server is being built; see README.md)")
}
