//! One compile, not two, for a cell that ends in a plain value such as `1 + 1`.
//!
//! evcxr shows a cell's final expression by first compiling `(expr).evcxr_display();`.
//! For a value with no `evcxr_display` method that compile fails, and evcxr compiles the
//! cell again with the value printed by `{:?}`: every such cell pays a failed build
//! (0.15 s on an idle machine here, measured with the kernel's `CONCLAB_KERNEL_TRACE`
//! log of evcxr's phases, where it shows as `Fallback`).
//!
//! The kernel defines, at start, a trait with an `evcxr_display` method for the standard
//! library's plain values (numbers, text, collections, `Option`, `Result`, tuples) that
//! prints exactly what evcxr's fallback prints, so the first compile succeeds. The trait
//! only covers types that neither have an `evcxr_display` of their own nor dereference to
//! one that might: a `Box`, `Arc` or guard around a conclab chart keeps evcxr's search
//! through `Deref`, and the chart its picture. Any other type, a user's own struct among
//! them, takes evcxr's usual path.
//!
//! evcxr's fallback follows `:fmt` and `:types`; the trait cannot read them, so a cell
//! that uses either turns the trait off for the rest of the kernel's life.

/// The item the kernel evaluates at start. Every method is `#[inline]`, so a cell pays
/// for code generation only of the one it calls.
pub const ITEM: &str = r#"mod conclab_kernel_display {
    #[inline]
    fn show<T: ::std::fmt::Debug + ?Sized>(value: &T) {
        use ::std::io::Write;
        let text = format!("{:?}", value);
        let mut out = ::std::io::stdout().lock();
        let sent = out
            .write_all(b"EVCXR_BEGIN_CONTENT text/plain\n")
            .and_then(|_| out.write_all(text.as_bytes()))
            .and_then(|_| out.write_all(b"\nEVCXR_END_CONTENT\n"));
        if let Err(error) = sent {
            eprintln!("Failed to send content to parent: {:?}", error);
            ::std::process::exit(1);
        }
    }
    pub trait Show {
        fn evcxr_display(&self);
    }
    macro_rules! plain {
        ($($t:ty),*) => {$(
            impl Show for $t {
                #[inline]
                fn evcxr_display(&self) { show(self) }
            }
        )*};
    }
    plain!(i8, i16, i32, i64, i128, isize, u8, u16, u32, u64, u128, usize, f32, f64,
        bool, char, str, String, (), ::std::time::Duration);
    macro_rules! generic {
        ($(<$($p:ident),*> $t:ty),*) => {$(
            impl<$($p: ::std::fmt::Debug),*> Show for $t {
                #[inline]
                fn evcxr_display(&self) { show(self) }
            }
        )*};
    }
    generic!(<T> Vec<T>, <T> [T], <T> Option<T>, <T, E> Result<T, E>,
        <T> ::std::collections::VecDeque<T>, <T> ::std::collections::BTreeSet<T>,
        <K, V> ::std::collections::BTreeMap<K, V>, <T> ::std::collections::HashSet<T>,
        <K, V> ::std::collections::HashMap<K, V>,
        <A, B> (A, B), <A, B, C> (A, B, C), <A, B, C, D> (A, B, C, D));
    impl<T: ::std::fmt::Debug, const N: usize> Show for [T; N] {
        #[inline]
        fn evcxr_display(&self) { show(self) }
    }
}
use conclab_kernel_display::Show as _;"#;

/// What replaces [`ITEM`] once a cell changes how evcxr formats values: the same names,
/// so the `use` still resolves, and no method, so evcxr's own fallback runs again.
pub const OFF: &str = "mod conclab_kernel_display {\n    pub trait Show {}\n}";

/// Whether `code` holds a command that changes evcxr's fallback format (`:fmt`, `:types`).
pub fn changes_format(code: &str) -> bool {
    code.lines().any(|line| {
        let command = line.split_whitespace().next().unwrap_or("");
        command == ":fmt" || command == ":types"
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_format_commands_turn_it_off() {
        assert!(changes_format(":fmt {:#?}"));
        assert!(changes_format("let x = 1;\n  :types"));
        assert!(!changes_format(":timing"));
        assert!(!changes_format("let fmt = 1; // :fmt in a comment"));
        assert!(!changes_format(":format"));
    }

    #[test]
    fn the_item_covers_no_smart_pointer() {
        // Box, Rc, Arc and guards dereference to values that may have an evcxr_display
        // of their own, which evcxr finds through Deref: the trait must not shadow it.
        for pointer in ["Box", "Rc", "Arc", "Guard", "Ref", "Cow"] {
            assert!(!ITEM.contains(pointer), "{pointer}");
        }
    }
}
