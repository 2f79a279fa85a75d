/work/main/bench/store-choice/target/release/deps/compare-50306c5999a7d278.d: /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/compare-0.0.6/src/lib.rs

/work/main/bench/store-choice/target/release/deps/libcompare-50306c5999a7d278.rlib: /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/compare-0.0.6/src/lib.rs

/work/main/bench/store-choice/target/release/deps/libcompare-50306c5999a7d278.rmeta: /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/compare-0.0.6/src/lib.rs

/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/compare-0.0.6/src/lib.rs:
