//! Symbol names for (module, file offset) pairs, through blazesym (ELF symbol tables, DWARF
//! line tables and inlined functions, C++/Rust demangling), cached per module and offset so a
//! stack seen again, or the same code in another process, costs a hash lookup.
//!
//! This runs in user space at report time, never in the probe. A module without symbols (a
//! stripped binary) or that cannot be opened any more yields `None`, and reports fall back to
//! module + offset.

use std::collections::HashMap;

use blazesym::symbolize::{
    Input, Symbolized, Symbolizer,
    source::{Elf, Source},
};
use serde::Serialize;

use super::modules::{Module, ModuleId};

/// A function a frame is inlined into another, innermost last.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Inlined {
    pub function: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<u32>,
}

/// What the symbolizer knows about one code offset.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Symbol {
    /// Demangled function name.
    pub function: String,
    /// Offset of the address from the function's start.
    pub offset: u64,
    /// Source file and line, where DWARF has them.
    pub file: Option<String>,
    pub line: Option<u32>,
    /// Calls inlined at this address, outermost first.
    pub inlined: Vec<Inlined>,
}

/// blazesym's symbolizer and our per-module cache of its answers.
pub struct Symbols {
    symbolizer: Symbolizer,
    cache: HashMap<(ModuleId, u64), Option<Symbol>>,
}

impl Default for Symbols {
    fn default() -> Self {
        Self::new()
    }
}

impl Symbols {
    /// A symbolizer with source lines, inlined functions and demangling on.
    pub fn new() -> Self {
        Self {
            symbolizer: Symbolizer::builder()
                .enable_code_info(true)
                .enable_inlined_fns(true)
                .enable_demangling(true)
                .build(),
            cache: HashMap::new(),
        }
    }

    /// Symbolizes the offsets of `module` not cached yet, in one batch.
    pub fn resolve(&mut self, id: ModuleId, module: &Module, offsets: &[u64]) {
        let mut todo: Vec<u64> = offsets
            .iter()
            .copied()
            .filter(|o| !self.cache.contains_key(&(id, *o)))
            .collect();
        todo.sort_unstable();
        todo.dedup();
        if todo.is_empty() {
            return;
        }
        let answers: Vec<Option<Symbol>> = match &module.open_path {
            Some(path) => {
                let src = Source::Elf(Elf::new(path));
                match self.symbolizer.symbolize(&src, Input::FileOffset(&todo)) {
                    Ok(syms) => syms.into_iter().map(to_symbol).collect(),
                    // Unreadable now (its process and mount namespace are gone): offsets it is.
                    Err(e) => {
                        tracing::debug!("symbolizing {}: {e}", path.display());
                        vec![None; todo.len()]
                    }
                }
            }
            None => vec![None; todo.len()],
        };
        for (offset, sym) in todo.into_iter().zip(answers) {
            self.cache.insert((id, offset), sym);
        }
    }

    /// The symbol at `offset` of module `id`, once [`Self::resolve`]d.
    pub fn get(&self, id: ModuleId, offset: u64) -> Option<&Symbol> {
        self.cache.get(&(id, offset)).and_then(Option::as_ref)
    }
}

fn to_symbol(s: Symbolized<'_>) -> Option<Symbol> {
    let sym = s.into_sym()?;
    let (file, line) = match &sym.code_info {
        Some(ci) => (Some(ci.to_path().display().to_string()), ci.line),
        None => (None, None),
    };
    Some(Symbol {
        function: sym.name.into_owned(),
        offset: sym.offset as u64,
        file,
        line,
        inlined: sym
            .inlined
            .iter()
            .map(|f| Inlined {
                function: f.name.to_string(),
                file: f
                    .code_info
                    .as_ref()
                    .map(|ci| ci.to_path().display().to_string()),
                line: f.code_info.as_ref().and_then(|ci| ci.line),
            })
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// This test binary has symbols: the address of a function of ours symbolizes to its name.
    #[test]
    fn symbolizes_a_function_of_this_binary_and_caches_it() {
        let mut modules = super::super::modules::ModuleCache::new();
        let addr = symbolizes_a_function_of_this_binary_and_caches_it as *const () as u64;
        let loc = modules.locate(std::process::id(), &[addr]);
        let super::super::modules::Location::Module { module, offset } = loc[0] else {
            panic!("{loc:?}")
        };
        let mut symbols = Symbols::new();
        symbols.resolve(module, modules.module(module), &[offset]);
        let sym = symbols.get(module, offset).expect("a symbol");
        assert!(
            sym.function
                .ends_with("symbolizes_a_function_of_this_binary_and_caches_it"),
            "{sym:?}"
        );
        assert_eq!(sym.offset, 0);
        // A pseudo module has nothing to read: no symbol, and the answer is cached too.
        let pseudo = Module {
            path: "[vdso]".into(),
            open_path: None,
        };
        symbols.resolve(usize::MAX, &pseudo, &[5]);
        assert!(symbols.get(usize::MAX, 5).is_none());
        assert!(symbols.cache.contains_key(&(usize::MAX, 5)));
    }
}
