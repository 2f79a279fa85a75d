/work/main/bench/store-choice/target/release/deps/double_ended_peekable-5b672dbd8b41d80a.d: /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/double-ended-peekable-0.1.0/src/lib.rs

/work/main/bench/store-choice/target/release/deps/libdouble_ended_peekable-5b672dbd8b41d80a.rlib: /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/double-ended-peekable-0.1.0/src/lib.rs

/work/main/bench/store-choice/target/release/deps/libdouble_ended_peekable-5b672dbd8b41d80a.rmeta: /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/double-ended-peekable-0.1.0/src/lib.rs

/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/double-ended-peekable-0.1.0/src/lib.rs:
