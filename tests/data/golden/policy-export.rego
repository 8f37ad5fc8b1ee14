# opa-docker-authz: the nearest Rego module to the docktap policy policy.yaml
# It is WIDER than the policy:
#   - clients (uid 0) cannot be told apart: every rule applies to every client
#   - the plugin's input names the user of a TLS client certificate, not a uid or program
#   - body keys are matched case-insensitively and every copy of a repeated key is checked (narrower than dockerd, which keeps the last)
#   - pulled images (ImageCreate's fromImage) and security options are not limited
package docker.authz

import rego.v1

default allow := false

allow if {
	allowed_request
	not denied_body
}

path := regex.replace(input.PathPlain, `^/v[0-9.]+`, "")

allowed_request if {
	input.Method == "HEAD"
	regex.match(`^/_ping$`, path)
}

allowed_request if {
	input.Method == "POST"
	regex.match(`^/containers/create$`, path)
}

allowed_request if {
	input.Method == "POST"
	regex.match(`^/containers/[^/]+/attach$`, path)
}

allowed_request if {
	input.Method == "POST"
	regex.match(`^/containers/[^/]+/start$`, path)
}

allowed_request if {
	input.Method == "POST"
	regex.match(`^/containers/[^/]+/wait$`, path)
}

# The values of every key of `obj` that Go's encoding/json would match to `name`.
fields(obj, name) := {v | some k, v in obj; lower(k) == lower(name)}

create if {
	input.Method == "POST"
	path == "/containers/create"
}

# The create body's HostConfig, and the body itself (its deprecated top-level one).
host_configs contains h if some h in fields(input.Body, "HostConfig")

host_configs contains input.Body

strings(value) := {value} if is_string(value)

strings(value) := {v | some v in value} if is_array(value)

allowed_images := {"bb"}

allowed_binds := {"/tmp/docktap-3vsi0j0x/docker.sock", "/usr/local/bin/docker"}

allowed_capabilities := set()

allowed_devices := set()

allowed_host_namespaces := set()

covered(source) if {
	some prefix in allowed_binds
	source == prefix
}

covered(source) if {
	some prefix in allowed_binds
	startswith(source, concat("", [trim_right(prefix, "/"), "/"]))
}

bind_source contains split(b, ":")[0] if {
	some h in host_configs
	some binds in fields(h, "Binds")
	some b in binds
}

bind_source contains source if {
	some h in host_configs
	some mounts in fields(h, "Mounts")
	some m in mounts
	"bind" in fields(m, "Type")
	some source in fields(m, "Source")
}

denied_body if {
	create
	some h in host_configs
	true in fields(h, "Privileged")
}

denied_body if {
	input.Method == "POST"
	regex.match(`^/containers/[^/]+/exec$`, path)
	true in fields(input.Body, "Privileged")
}

denied_body if {
	create
	some image in fields(input.Body, "Image")
	not image in allowed_images
}

denied_body if {
	create
	some source in bind_source
	startswith(source, "/")
	not covered(source)
}

denied_body if {
	create
	some h in host_configs
	some field in ["CapAdd", "Capabilities"]
	some value in fields(h, field)
	some cap in strings(value)
	not trim_prefix(upper(cap), "CAP_") in allowed_capabilities
}

denied_body if {
	create
	some h in host_configs
	some devices in fields(h, "Devices")
	some d in devices
	some device in fields(d, "PathOnHost")
	not device in allowed_devices
}

denied_body if {
	create
	some h in host_configs
	some field in ["NetworkMode", "PidMode", "IpcMode", "UTSMode", "UsernsMode", "CgroupnsMode"]
	"host" in fields(h, field)
	not field in allowed_host_namespaces
}
