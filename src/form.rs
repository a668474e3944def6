//! What a program given to `wasm-pin run` is, found from its bytes before
//! anything is compiled (the form decides how the engine is configured): a
//! core module (a WASI preview1 program), a WASI 0.2 command component or a
//! WASI 0.3 one. Text (`.wat`) is accepted too, as `wasmtime run` does.

use std::path::Path;
use wasmparser::{Parser, Payload};
use wasmtime::error::Context as _;
use wasmtime::{bail, Result};

/// A program's form, with its binary.
#[derive(Debug)]
pub enum Program {
    /// A core module: run with WASI preview1 (`wasi_snapshot_preview1`).
    Core(Vec<u8>),
    /// A component; `run` names the `wasi:cli/run` versions it exports.
    Component { bytes: Vec<u8>, run: RunExports },
}

/// Which `wasi:cli/run` interfaces a component exports.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RunExports {
    /// `wasi:cli/run@0.2.x`: a WASI 0.2 command.
    pub p2: bool,
    /// `wasi:cli/run@0.3.x` (or a 0.3 pre-release): a WASI 0.3 command.
    pub p3: bool,
}

/// Reads `path` and tells what it is; text is translated to binary first.
pub fn load(path: &Path) -> Result<Program> {
    let shown = path.display();
    let bytes = std::fs::read(path).with_context(|| format!("failed to read `{shown}`"))?;
    classify(bytes).with_context(|| format!("`{shown}`"))
}

/// Tells a core module from a component (text is translated to binary).
pub fn classify(bytes: Vec<u8>) -> Result<Program> {
    let bytes = if bytes.starts_with(b"\0asm") {
        bytes
    } else {
        match wat::parse_bytes(&bytes) {
            Ok(binary) => binary.into_owned(),
            Err(e) => bail!("not a WebAssembly module or component (neither binary nor text: {e})"),
        }
    };
    if Parser::is_core_wasm(&bytes) {
        Ok(Program::Core(bytes))
    } else if Parser::is_component(&bytes) {
        let run = run_exports(&bytes)?;
        Ok(Program::Component { bytes, run })
    } else {
        bail!("not a WebAssembly module or component: unknown binary version or layer")
    }
}

/// The `wasi:cli/run` versions among the component's own (top-level)
/// exports; nested modules' and components' exports are skipped.
fn run_exports(bytes: &[u8]) -> Result<RunExports> {
    let mut run = RunExports::default();
    let mut depth = 0usize;
    for payload in Parser::new(0).parse_all(bytes) {
        match payload.context("malformed component")? {
            Payload::ModuleSection { .. } | Payload::ComponentSection { .. } => depth += 1,
            Payload::End(_) => depth = depth.saturating_sub(1),
            Payload::ComponentExportSection(exports) if depth == 0 => {
                for export in exports {
                    let name = export.context("malformed component export")?.name.name;
                    if let Some(version) = name.strip_prefix("wasi:cli/run@") {
                        run.p2 |= version.starts_with("0.2.");
                        run.p3 |= version.starts_with("0.3.");
                    }
                }
            }
            _ => {}
        }
    }
    Ok(run)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn command(version: &str) -> String {
        format!(
            r#"(component
                 (component $nested (instance $x) (export "wasi:cli/run@0.3.0" (instance $x)))
                 (core module $m (func (export "run") (result i32) i32.const 0))
                 (core instance $i (instantiate $m))
                 (type $status (result))
                 (func $run (result $status) (canon lift (core func $i "run")))
                 (instance $run_instance (export "run" (func $run)))
                 (export "wasi:cli/run@{version}" (instance $run_instance)))"#
        )
    }

    #[test]
    fn forms_from_binary_and_text() {
        assert!(matches!(classify(b"(module)".to_vec()).unwrap(), Program::Core(_)));
        let core = wat::parse_str("(module (memory 1))").unwrap();
        assert!(matches!(classify(core).unwrap(), Program::Core(_)));
        for (version, want) in [
            ("0.2.12", RunExports { p2: true, p3: false }),
            ("0.3.0", RunExports { p2: false, p3: true }),
            ("0.3.0-rc-2025-09-16", RunExports { p2: false, p3: true }),
        ] {
            match classify(command(version).into_bytes()).unwrap() {
                Program::Component { run, .. } => assert_eq!(run, want, "{version}"),
                p => panic!("{p:?}"),
            }
        }
        let other = "(component (core module $m) (core instance (instantiate $m)))";
        match classify(other.as_bytes().to_vec()).unwrap() {
            Program::Component { run, .. } => assert_eq!(run, RunExports::default()),
            p => panic!("{p:?}"),
        }
    }

    #[test]
    fn other_files_are_refused() {
        let err = classify(b"hello\n".to_vec()).unwrap_err();
        assert!(
            format!("{err:?}").contains("not a WebAssembly module or component"),
            "{err:?}"
        );
        let err = classify(b"\0asm\x01\0\x02\0".to_vec()).unwrap_err();
        assert!(
            format!("{err:?}").contains("unknown binary version or layer"),
            "{err:?}"
        );
    }
}
