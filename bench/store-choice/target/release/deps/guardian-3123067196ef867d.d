/work/main/bench/store-choice/target/release/deps/guardian-3123067196ef867d.d: /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/guardian-1.3.0/src/lib.rs

/work/main/bench/store-choice/target/release/deps/libguardian-3123067196ef867d.rlib: /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/guardian-1.3.0/src/lib.rs

/work/main/bench/store-choice/target/release/deps/libguardian-3123067196ef867d.rmeta: /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/guardian-1.3.0/src/lib.rs

/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/guardian-1.3.0/src/lib.rs:
