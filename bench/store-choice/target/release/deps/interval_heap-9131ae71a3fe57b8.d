/work/main/bench/store-choice/target/release/deps/interval_heap-9131ae71a3fe57b8.d: /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/interval-heap-0.0.5/src/lib.rs

/work/main/bench/store-choice/target/release/deps/libinterval_heap-9131ae71a3fe57b8.rlib: /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/interval-heap-0.0.5/src/lib.rs

/work/main/bench/store-choice/target/release/deps/libinterval_heap-9131ae71a3fe57b8.rmeta: /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/interval-heap-0.0.5/src/lib.rs

/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/interval-heap-0.0.5/src/lib.rs:
