/work/main/bench/store-choice/target/release/deps/std_semaphore-db3e7b532c619657.d: /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/std-semaphore-0.1.0/src/lib.rs

/work/main/bench/store-choice/target/release/deps/libstd_semaphore-db3e7b532c619657.rlib: /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/std-semaphore-0.1.0/src/lib.rs

/work/main/bench/store-choice/target/release/deps/libstd_semaphore-db3e7b532c619657.rmeta: /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/std-semaphore-0.1.0/src/lib.rs

/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/std-semaphore-0.1.0/src/lib.rs:
