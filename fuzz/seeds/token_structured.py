import sys, os, struct
class E:
    def __init__(s): s.F=bytearray(); s.B=[]
    def variant(s,k,n):
        v=-(-k*(1<<32)//n)  # ceil
        assert (v*n)>>32==k
        s.F+=struct.pack('<I',v)
    def b(s,x): s.F.append(1 if x else 0)
    def str(s,x):
        bb=x.encode(); s.B.append(len(bb)); s.F+=bb
    def json(s,j):
        kind=j[0]
        names=['Null','Bool','Int','Float','Near','Str','Arr','Obj']
        s.variant(names.index(kind),8)
        if kind=='Near': s.F+=struct.pack('<i',j[1])
        elif kind=='Str': s.str(j[1])
        elif kind=='Arr':
            for x in j[1]: s.b(1); s.json(x)
            s.b(0)
        elif kind=='Int': s.F+=struct.pack('<q',j[1])
    def data(s):
        d=bytes(s.F)+bytes(reversed(s.B)); assert len(d)<=256, len(d); return d
ALGS=['Rs256','Rs384','Rs512','Ps256','Es256','Es384','Hs256','EdDsa','Named']
def enc(alg='Rs256', kid='Rsa', typ='JWT', claims=None, signed=True, named=None):
    e=E()
    e.variant(ALGS.index(alg),9)
    if alg=='Named': e.str(named)
    kids=['None','Rsa','Ec','Other']; e.variant(kids.index(kid),4)
    if typ is None: e.b(0)
    else: e.b(1); e.str(typ)
    e.b(0)        # crit
    e.b(0)        # header_extra: empty
    e.variant(0,2) # header: Fields
    claims=claims or {}
    for name in ['iss','sub','aud','exp','nbf','iat','jti']:
        c=claims.get(name,'Good')
        if c=='Absent': e.variant(0,3)
        elif c=='Good': e.variant(1,3)
        else: e.variant(2,3); e.json(c)
    e.b(0)        # extra: empty
    e.variant(0,2) # payload: Fields
    e.b(signed)
    return e.data()
seeds={
 'seed-rs256-all-good': enc(),
 'seed-es256-all-good': enc(alg='Es256', kid='Ec'),
 'seed-ps256-no-kid-no-jti': enc(alg='Ps256', kid='None', typ=None, claims={'jti':'Absent'}),
 'seed-alg-none': enc(alg='Named', named='none', signed=False),
 'seed-hs256-kid-rsa': enc(alg='Hs256'),
 'seed-expired': enc(claims={'exp':('Near',-500)}),
 'seed-aud-array': enc(claims={'aud':('Arr',[('Str','other'),('Str','erp-api')])}),
 'seed-exp-string': enc(claims={'exp':('Str','1750000300')}),
}
for n,d in seeds.items(): open(os.path.join(sys.argv[1],n),'wb').write(d)
