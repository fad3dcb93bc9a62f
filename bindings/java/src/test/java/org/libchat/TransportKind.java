package org.libchat;

/** The transports every client test runs over. */
enum TransportKind {
  JDK {
    @Override
    Transport make() {
      return new JdkTransport();
    }
  },
  OKHTTP {
    @Override
    Transport make() {
      return new OkHttpTransport();
    }
  };

  abstract Transport make();
}
