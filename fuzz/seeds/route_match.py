import sys, os
def enc(routes, gw_prefix, host, path):
    F=bytearray(); B=[]
    def s(x):
        b=x.encode(); B.append(len(b)); F.extend(b)
    for h,p in routes:
        F.append(1)
        if h is None: F.append(0)
        else: F.append(1); s(h)
        s(p)
    F.append(0)
    s(gw_prefix)
    if host is None: F.append(0)
    else: F.append(1); s(host)
    F.extend(path.encode())
    data = bytes(F) + bytes(reversed(B))
    assert len(data) <= 256
    return data
std=[("erp.example.com","/api/"),("*.tenant.example","/"),(None,"/public/"),(None,"/")]
seeds={
 'seed-api-route': (std, "/.gateway", "ERP.example.com:8443", "/api/orders?x=1"),
 'seed-dotdot-semicolon': (std, "/.gateway", None, "/status/..;/api/orders"),
 'seed-encoded-dots': (std, "/.gateway", "a.tenant.example", "/api/%2e%2E/admin"),
 'seed-double-slash': (std, "/.gateway", None, "/public//x"),
 'seed-encoded-unreserved': (std, "/.gateway", None, "/%61pi/x"),
 'seed-encoded-slash-data': (std, "/.gateway", None, "/public/a%20b%2Fc"),
 'seed-gateway-endpoint': (std, "/.gateway/", None, "/.gateway/session"),
}
out=sys.argv[1]
for n,a in seeds.items():
    open(os.path.join(out,n),'wb').write(enc(*a))
