module libchat/examples/go

go 1.23

require libchat/chat v0.0.0

require github.com/coder/websocket v1.8.15 // indirect

replace libchat/chat => ../../bindings/go
