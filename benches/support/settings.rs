//! Command-line settings: `--quick`, `--only`, `--skip`, and the counts they imply.

pub(crate) struct Settings {
    pub(crate) quick: bool,
    only: Vec<String>,
    skip: Vec<String>,
}

impl Settings {
    pub(crate) fn from_args() -> Settings {
        let mut s = Settings {
            quick: false,
            only: Vec::new(),
            skip: Vec::new(),
        };
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--quick" => s.quick = true,
                "--only" => s.only.extend(args.next()),
                "--skip" => s.skip.extend(args.next()),
                "--bench" => {} // passed by `cargo bench`
                other => eprintln!("ignoring argument {other}"),
            }
        }
        s
    }

    /// `--only` and `--skip` take backends (sqlite-file, sqlite-mem, postgres, mysql) and
    /// sections (single, bulk, pool, history, web); `--only` of one kind leaves the other kind alone.
    pub(crate) fn wants(&self, what: &str) -> bool {
        const BACKENDS: [&str; 4] = ["sqlite-file", "sqlite-mem", "postgres", "mysql"];
        let same_kind = |o: &&String| BACKENDS.contains(&o.as_str()) == BACKENDS.contains(&what);
        let only: Vec<&String> = self.only.iter().filter(same_kind).collect();
        (only.is_empty() || only.iter().any(|o| *o == what)) && !self.skip.iter().any(|s| s == what)
    }

    /// Single-row operations per variant with one transaction each.
    pub(crate) fn own_tx_ops(&self) -> usize {
        if self.quick { 200 } else { 2_000 }
    }

    /// Rounds of 1,000 operations in one transaction.
    pub(crate) fn batch_rounds(&self) -> usize {
        if self.quick { 1 } else { 3 }
    }

    pub(crate) fn bulk_rows(&self) -> usize {
        if self.quick { 1_000 } else { 10_000 }
    }

    pub(crate) fn bulk_rounds(&self) -> usize {
        if self.quick { 2 } else { 5 }
    }

    /// Requests per variant through the axum layer.
    #[cfg(feature = "axum")]
    pub(crate) fn web_requests(&self) -> usize {
        if self.quick { 300 } else { 3_000 }
    }

    /// Activity entries per writer round.
    #[cfg(feature = "axum")]
    pub(crate) fn writer_entries(&self) -> usize {
        if self.quick { 2_000 } else { 10_000 }
    }

    pub(crate) fn history_rows(&self) -> usize {
        if self.quick { 100_000 } else { 1_000_000 }
    }
}
