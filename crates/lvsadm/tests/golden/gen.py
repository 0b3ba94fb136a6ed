#!/usr/bin/env python3
"""Golden outputs for lvsadm, written independently of lvsadm's renderer.

Applies ipvsadm 1.31's printf formats (ipvsadm.c: list_all, print_title,
print_service_entry, print_largenum, print_sched_flags, print_tunnel_rule, list_conn,
print_conn, list_timeout, addrport_to_anyname) to a table defined here, and writes:

  table.json   the table as lvsd's control API answers `list` (Reply::Services)
  conns.json   connection entries as lvsd answers `connections`
  cases.json   which command line renders which reply into which golden file
  hosts, services   the name tables used by the cases without -n
  *.txt        the expected outputs

Run: python3 gen.py   (from this directory). Deterministic; check the outputs in.
"""
import ipaddress
import json
import os

HERE = os.path.dirname(os.path.abspath(__file__))

T = 10**12
# ---------------------------------------------------------------- the table
def svc(proto, addr, port, sched, *, flags=0, persist=None, mask=None, ops=False,
        fwmark=None, v6=False, stats=(0, 0, 0, 0, 0), rates=(0, 0, 0, 0, 0), dests=()):
    return dict(proto=proto, addr=addr, port=port, sched=sched, flags=flags,
                persist=persist, mask=mask, ops=ops, fwmark=fwmark, v6=v6,
                stats=stats, rates=rates, dests=list(dests))

def dest(addr, port, method, weight=1, *, x=0, y=0, active=0, inactive=0, persistent=0,
         stats=(0, 0, 0, 0, 0), rates=(0, 0, 0, 0, 0)):
    return dict(addr=addr, port=port, method=method, weight=weight, x=x, y=y,
                active=active, inactive=inactive, persistent=persistent,
                stats=stats, rates=rates)

# Given out of order, so the listing's sort is exercised. Every scheduler, every method,
# fwmark (IPv4 and IPv6), persistence with masks, IPv6, SCTP, thresholds, scheduler flags,
# one-packet scheduling, a port-0 persistent service, counters across K/M/G/T.
SERVICES = [
    svc(None, None, 0, 'rr', fwmark=8, v6=True,
        dests=[dest('2001:db8::20', 0, 'Tunnel', 3)]),
    svc(None, None, 0, 'wlc', fwmark=7, persist=600, mask=16,
        dests=[dest('10.0.4.2', 0, 'DirectRoute', 1), dest('10.0.4.1', 0, 'DirectRoute', 2)]),
    svc('Tcp', '2001:db8::1', 443, 'twos',
        dests=[dest('2001:db8::11', 443, 'DirectRoute', 65535, active=1234567, inactive=7654321)]),
    svc('Tcp', '2001:db8::1', 80, 'mh', flags=2, persist=60, mask=64,
        stats=(5, 6, 7, 8, 9), rates=(1, 2, 3, 4, 5),
        dests=[dest('2001:db8::10', 8080, 'Masq', 1, persistent=42, active=3, inactive=4)]),
    svc('Sctp', '10.0.0.7', 5060, 'rr', dests=[dest('10.0.7.1', 5060, 'Masq')]),
    svc('Udp', '10.0.0.1', 53, 'sh', flags=3, ops=True,
        stats=(100_000_000, 999_999_999, 1_000_000_000, 99_999_999_999, 100_000_000_000),
        rates=(99_999_999, 100_000_000, 1_000_000_000, 100_000_000_000, 123_456_789_012_345),
        dests=[dest('10.0.3.1', 53, 'DirectRoute',
                    stats=(100_000_000, 999_999_999, 1_000_000_000, 99_999_999_999, 100_000_000_000),
                    rates=(99_999_999, 100_000_000, 1_000_000_000, 100_000_000_000, 123_456_789_012_345))]),
    svc('Tcp', '10.0.0.8', 0, 'wlc', persist=1800, mask=24,
        dests=[dest('10.0.8.1', 0, 'DirectRoute')]),
    svc('Tcp', '10.0.0.6', 81, 'ovf', dests=[dest('10.0.6.2', 81, 'DirectRoute', 10, x=500, y=0)]),
    svc('Tcp', '10.0.0.6', 80, 'fo', dests=[dest('10.0.6.1', 80, 'DirectRoute', 10)]),
    svc('Tcp', '10.0.0.5', 110, 'nq', dests=[dest('10.0.5.2', 110, 'Tunnel')]),
    svc('Tcp', '10.0.0.5', 25, 'sed', dests=[dest('10.0.5.1', 25, 'Tunnel')]),
    svc('Tcp', '10.0.0.4', 80, 'dh', dests=[]),
    svc('Tcp', '10.0.0.3', 81, 'lblcr', flags=4, dests=[dest('10.0.3.3', 81, 'Masq')]),
    svc('Tcp', '10.0.0.3', 80, 'lblc', dests=[dest('10.0.3.2', 80, 'Masq')]),
    svc('Tcp', '10.0.0.2', 8080, 'wlc', dests=[dest('10.0.2.9', 8080, 'Masq', 0)]),
    svc('Tcp', '10.0.0.2', 80, 'lc', dests=[dest('10.0.2.8', 80, 'Masq', 5)]),
    svc('Tcp', '10.0.0.1', 443, 'wrr', persist=300, mask=24,
        stats=(12, 340, 0, 51234, 123_456_789),
        rates=(3, 250, 0, 48_000, 0),
        dests=[dest('10.0.2.2', 443, 'Tunnel', 0, inactive=7, persistent=2),
               dest('10.0.2.1', 443, 'DirectRoute', 1, active=3, inactive=1, persistent=5)]),
    svc('Tcp', '10.0.0.1', 80, 'rr',
        stats=(1_000_000_000_000, 12_345_678_901_234, 99_999_999, 123_456_789_012_345, 7),
        rates=(12, 3400, 3300, 1_234_567, 99_999_999_999),
        dests=[dest('10.0.1.3', 8080, 'Masq', 2, x=100, y=50, active=5, inactive=10,
                    stats=(1_000_000_000_000, 12_345_678_901_234, 99_999_999, 123_456_789_012_345, 7),
                    rates=(12, 3400, 3300, 1_234_567, 99_999_999_999)),
               dest('10.0.1.2', 80, 'Masq', 1, x=0, y=0)]),
]

CONNS = [
    dict(proto='Tcp', caddr='192.168.1.10', cport=40000, vaddr='10.0.0.1', vport=80,
         daddr='10.0.1.2', dport=80, state='ESTABLISHED', expires_secs=899, method='Masq',
         template=False),
    dict(proto='Udp', caddr='2001:db8::99', cport=5353, vaddr='2001:db8::1', vport=53,
         daddr='2001:db8::10', dport=53, state='UDP', expires_secs=245, method='Masq',
         template=False),
    dict(proto='Tcp', caddr='192.168.1.0', cport=0, vaddr='10.0.0.1', vport=443,
         daddr='10.0.2.1', dport=443, state='NONE', expires_secs=6000, method='DirectRoute',
         template=True),
    dict(proto='Tcp', caddr='192.168.1.11', cport=51000, vaddr='10.0.0.1', vport=443,
         daddr='10.0.2.1', dport=443, state='FIN_WAIT', expires_secs=7, method='DirectRoute',
         template=False),
]

HOSTS = "127.0.0.1 localhost\n10.0.0.1 www.example.com www\n10.0.1.2 rs1.example.com\n2001:db8::1 v6.example.com\n"
SERVICES_FILE = ("http\t80/tcp\twww\nhttps\t443/tcp\ndomain\t53/tcp\ndomain\t53/udp\n"
                 "http-alt\t8080/tcp\twebcache\nsip\t5060/sctp\n")

# ---------------------------------------------------------------- JSON for lvsd's API
def key_json(s):
    if s['fwmark'] is not None:
        return {'Fwmark': {'mark': s['fwmark'], 'family': 'V6' if s['v6'] else 'V4'}}
    return {'Addr': {'proto': s['proto'], 'addr': s['addr'], 'port': s['port']}}

def family(s):
    if s['fwmark'] is not None:
        return 6 if s['v6'] else 4
    return ipaddress.ip_address(s['addr']).version

def stats_json(t):
    return dict(zip(['conns', 'inpkts', 'outpkts', 'inbytes', 'outbytes'], t))

def rates_json(t):
    return dict(zip(['cps', 'inpps', 'outpps', 'inbps', 'outbps'], t))

def svc_json(s):
    persistence = None
    if s['persist'] is not None:
        fam = family(s)
        m = s['mask'] if s['mask'] is not None else (32 if fam == 4 else 128)
        persistence = {'timeout': {'secs': s['persist'], 'nanos': 0},
                       'netmask': {'V4' if fam == 4 else 'V6': m}}
    return {
        'config': {'key': key_json(s), 'scheduler': s['sched'].capitalize(),
                   'flags': s['flags'], 'persistence': persistence, 'one_packet': s['ops']},
        'stats': stats_json(s['stats']), 'rates': rates_json(s['rates']),
        'dests': [{
            'config': {'addr': d['addr'], 'port': d['port'], 'weight': d['weight'],
                       'method': d['method'], 'upper_threshold': d['x'],
                       'lower_threshold': d['y']},
            'active': d['active'], 'inactive': d['inactive'], 'persistent': d['persistent'],
            'overloaded': False, 'stats': stats_json(d['stats']), 'rates': rates_json(d['rates']),
        } for d in s['dests']],
    }

# ---------------------------------------------------------------- ipvsadm's C, in Python
FMT_NUMERIC, FMT_RULE, FMT_STATS, FMT_RATE = 0x1, 0x2, 0x4, 0x8
FMT_THRESHOLDS, FMT_PERSISTENTCONN, FMT_NOSORT, FMT_EXACT, FMT_TUN_INFO = 0x10, 0x20, 0x40, 0x80, 0x100
PROTO_NUM = {'Tcp': 6, 'Udp': 17, 'Sctp': 132}
PROTO_NAME = {'Tcp': 'TCP', 'Udp': 'UDP', 'Sctp': 'SCTP'}
FWD_NAME = {'Masq': 'Masq', 'DirectRoute': 'Route', 'Tunnel': 'Tunnel'}
FWD_SWITCH = {'Masq': '-m', 'DirectRoute': '-g', 'Tunnel': '-i'}

def parse_table(text, keyed):
    out = {}
    for line in text.splitlines():
        w = line.split('#')[0].split()
        if len(w) >= 2:
            keyed(out, w)
    return out

def _hosts(out, w):
    out.setdefault(ipaddress.ip_address(w[0]), w[1])

def _servs(out, w):
    port, proto = w[1].split('/')
    out.setdefault((int(port), proto), w[0])

HOSTS_BY_ADDR = parse_table(HOSTS, _hosts)
SERV_BY_PORT = parse_table(SERVICES_FILE, _servs)

def c_int(n):  # printf %d of an unsigned int
    return n - (1 << 32) if n >= (1 << 31) else n

def addrport_to_anyname(addr, port, proto, fmt):
    a = ipaddress.ip_address(addr)
    lb, rb = ('', '') if a.version == 4 else ('[', ']')
    if fmt & FMT_NUMERIC:
        buf = '%s%s%s:%u' % (lb, str(a), rb, port)
    else:
        host = HOSTS_BY_ADDR.get(a, str(a))
        pname = SERV_BY_PORT.get((port, proto.lower()), '%u' % port)
        buf = '%s%s%s:%s' % (lb, host, rb, pname)
    return buf[:59]  # snprintf(buf, 60, ...)

def print_largenum(i, fmt):
    if fmt & FMT_EXACT:
        n = len('%u' % i)
        return '%*u' % (9 if n <= 8 else n + 1, i)
    if i < 100000000:
        return '%9u' % i
    if i < 1000000000:
        return '%8uK' % (i // 1000)
    if i < 100000000000:
        return '%8uM' % (i // 1000000)
    if i < 100000000000000:
        return '%8uG' % (i // 1000000000)
    return '%8uT' % (i // 1000000000000)

def print_sched_flags(s):
    f = ''
    if s['sched'] == 'sh':
        f += 'sh-fallback,' if s['flags'] & 1 else ''
        f += 'sh-port,' if s['flags'] & 2 else ''
    elif s['sched'] == 'mh':
        f += 'mh-fallback,' if s['flags'] & 1 else ''
        f += 'mh-port,' if s['flags'] & 2 else ''
    else:
        f += 'flag-1,' if s['flags'] & 1 else ''
        f += 'flag-2,' if s['flags'] & 2 else ''
        f += 'flag-3,' if s['flags'] & 4 else ''
    return f[:-1]

def print_title(fmt):
    if fmt & FMT_STATS:
        return ('%-33s %8s %8s %8s %8s %8s\n  -> RemoteAddress:Port\n'
                % ('Prot LocalAddress:Port', 'Conns', 'InPkts', 'OutPkts', 'InBytes', 'OutBytes'))
    if fmt & FMT_RATE:
        return ('%-33s %8s %8s %8s %8s %8s\n  -> RemoteAddress:Port\n'
                % ('Prot LocalAddress:Port', 'CPS', 'InPPS', 'OutPPS', 'InBPS', 'OutBPS'))
    if fmt & FMT_THRESHOLDS:
        return ('%-33s %-10s %-10s %-10s %-10s\n  -> RemoteAddress:Port\n'
                % ('Prot LocalAddress:Port', 'Uthreshold', 'Lthreshold', 'ActiveConn', 'InActConn'))
    if fmt & FMT_PERSISTENTCONN:
        return ('%-33s %-9s %-11s %-10s %-10s\n  -> RemoteAddress:Port\n'
                % ('Prot LocalAddress:Port', 'Weight', 'PersistConn', 'ActiveConn', 'InActConn'))
    if fmt & FMT_TUN_INFO:
        return ('Prot LocalAddress:Port Scheduler Flags\n'
                '  -> RemoteAddress:Port           Forward TunnelInfo    Weight ActiveConn InActConn\n')
    if not fmt & FMT_RULE:
        return ('Prot LocalAddress:Port Scheduler Flags\n'
                '  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n')
    return ''

def v4mask(prefix):
    return str(ipaddress.ip_network('0.0.0.0/%d' % prefix).netmask)

def addr_int(a):
    return int(ipaddress.ip_address(a))

def cmp_key_service(s):
    # ipvs_cmp_services: fwmark, af, protocol, address, port (the table keeps addresses
    # within 2^31 of each other, where ipvsadm's subtraction orders them numerically).
    if s['fwmark'] is not None:
        return (s['fwmark'], 2 if family(s) == 4 else 10, PROTO_NUM['Tcp'], 0, 0)
    return (0, 2 if family(s) == 4 else 10, PROTO_NUM[s['proto']], addr_int(s['addr']), s['port'])

def cmp_key_dest(d):
    return (addr_int(d['addr']), d['port'])

def print_service_entry(s, fmt):
    out = []
    proto = s['proto'] or 'Tcp'  # fwmark services are created with IPPROTO_TCP
    fam = family(s)
    if s['fwmark'] is not None:
        if fmt & FMT_RULE:
            svc_name = ('-f %d -6' if fam == 6 else '-f %d') % c_int(s['fwmark'])
        else:
            svc_name = ('FWM  %d IPv6' if fam == 6 else 'FWM  %d') % c_int(s['fwmark'])
    else:
        vname = addrport_to_anyname(s['addr'], s['port'], proto, fmt)
        if fmt & FMT_RULE:
            stype = {'Tcp': '-t', 'Udp': '-u', 'Sctp': '--sctp-service'}[proto]
            svc_name = '%s %s' % (stype, vname)
        else:
            svc_name = '%-4s %s' % (PROTO_NAME[proto], vname)
            if fam != 6:
                svc_name = svc_name[:33]
    mask = s['mask'] if s['mask'] is not None else (32 if fam == 4 else 128)
    if fmt & FMT_RULE:
        line = '-A %s -s %s' % (svc_name, s['sched'])
        if s['persist'] is not None:
            line += ' -p %u' % s['persist']
            if fam == 4 and mask != 32:
                line += ' -M %s' % v4mask(mask)
            if fam == 6 and mask != 128:
                line += ' -M %i' % mask
        if s['ops']:
            line += ' -o'
        if s['flags'] & 7:
            line += ' -b ' + print_sched_flags(s)
    elif fmt & FMT_STATS:
        line = '%-33s' % svc_name + ''.join(print_largenum(v, fmt) for v in s['stats'])
    elif fmt & FMT_RATE:
        line = '%-33s' % svc_name + ''.join(print_largenum(v, fmt) for v in s['rates'])
    else:
        line = '%s %s' % (svc_name, s['sched'])
        if s['flags'] & 7:
            line += ' (' + print_sched_flags(s) + ')'
        if s['persist'] is not None:
            line += ' persistent %u' % s['persist']
            if fam == 4 and mask != 32:
                line += ' mask %s' % v4mask(mask)
            if fam == 6 and mask != 128:
                line += ' mask %i' % mask
        if s['ops']:
            line += ' ops'
    out.append(line + '\n')

    dests = s['dests'] if fmt & FMT_NOSORT else sorted(s['dests'], key=cmp_key_dest)
    for e in dests:
        dname = addrport_to_anyname(e['addr'], e['port'], proto, fmt)
        if not fmt & FMT_RULE and ipaddress.ip_address(e['addr']).version != 6:
            dname = dname[:28]
        if fmt & FMT_RULE:
            if e['method'] == 'Tunnel':  # print_tunnel_rule, IP_VS_CONN_F_TUNNEL_TYPE_IPIP
                out.append('-a %s -r %s %s -w %d --tun-type %s\n'
                           % (svc_name, dname, FWD_SWITCH[e['method']], e['weight'], 'ipip'))
            else:
                out.append('-a %s -r %s %s -w %d\n'
                           % (svc_name, dname, FWD_SWITCH[e['method']], e['weight']))
        elif fmt & FMT_STATS:
            out.append('  -> %-28s' % dname + ''.join(print_largenum(v, fmt) for v in e['stats']) + '\n')
        elif fmt & FMT_RATE:
            r = e['rates']
            out.append('  -> %-28s %8u %8u %8u' % (dname, r[0], r[1], r[2])
                       + print_largenum(r[3], fmt) + print_largenum(r[4], fmt) + '\n')
        elif fmt & FMT_THRESHOLDS:
            out.append('  -> %-28s %-10u %-10u %-10u %-10u\n'
                       % (dname, e['x'], e['y'], e['active'], e['inactive']))
        elif fmt & FMT_PERSISTENTCONN:
            out.append('  -> %-28s %-9u %-11u %-10u %-10u\n'
                       % (dname, e['weight'], e['persistent'], e['active'], e['inactive']))
        elif fmt & FMT_TUN_INFO:
            ti = 'ipip' if e['method'] == 'Tunnel' else 'n/a'
            out.append('  -> %-28s %-7s %-13s %-6d %-10u %-10u\n'
                       % (dname, FWD_NAME[e['method']], ti, e['weight'], e['active'], e['inactive']))
        else:
            out.append('  -> %-28s %-7s %-6d %-10u %-10u\n'
                       % (dname, FWD_NAME[e['method']], e['weight'], e['active'], e['inactive']))
    return ''.join(out)

def list_all(fmt, size=4096):
    out = '' if fmt & FMT_RULE else 'IP Virtual Server version 1.2.1 (size=%d)\n' % size
    svcs = SERVICES if fmt & FMT_NOSORT else sorted(SERVICES, key=cmp_key_service)
    out += print_title(fmt)
    return out + ''.join(print_service_entry(s, fmt) for s in svcs)

def list_service(s, fmt):
    return print_title(fmt) + print_service_entry(s, fmt)

def list_conn(fmt):
    out = 'IPVS connection entries\n'
    if fmt & FMT_PERSISTENTCONN:
        out += 'pro expire %-11s %-18s %-18s %-18s %-16s %s\n' % (
            'state', 'source', 'virtual', 'destination', 'pe name', 'pe_data')
    else:
        out += 'pro expire %-11s %-18s %-18s %s\n' % ('state', 'source', 'virtual', 'destination')
    for c in CONNS:
        # /proc/net/ip_vs_conn has no pe name/data for these entries (n == 9), so the
        # short form is printed even with --persistent-conn.
        expire = '%02d:%02d' % (c['expires_secs'] // 60, c['expires_secs'] % 60)
        out += '%-3s %-6s %-11s %-18s %-18s %s\n' % (
            PROTO_NAME[c['proto']], expire, c['state'],
            addrport_to_anyname(c['caddr'], c['cport'], c['proto'], fmt),
            addrport_to_anyname(c['vaddr'], c['vport'], c['proto'], fmt),
            addrport_to_anyname(c['daddr'], c['dport'], c['proto'], fmt))
    return out

# ---------------------------------------------------------------- cases
N = FMT_NUMERIC
CASES = [
    ('-L -n', 'table', list_all(N), 'list.txt'),
    ('-L -n --nosort', 'table', list_all(N | FMT_NOSORT), 'list_nosort.txt'),
    ('-L -n --stats', 'table', list_all(N | FMT_STATS), 'stats.txt'),
    ('-L -n --stats --exact', 'table', list_all(N | FMT_STATS | FMT_EXACT), 'stats_exact.txt'),
    ('-L -n --rate', 'table', list_all(N | FMT_RATE), 'rate.txt'),
    ('-L -n --rate --exact', 'table', list_all(N | FMT_RATE | FMT_EXACT), 'rate_exact.txt'),
    ('-L -n --thresholds', 'table', list_all(N | FMT_THRESHOLDS), 'thresholds.txt'),
    ('-L -n --persistent-conn', 'table', list_all(N | FMT_PERSISTENTCONN), 'persistent_conn.txt'),
    ('-L -n --tun-info', 'table', list_all(N | FMT_TUN_INFO), 'tun_info.txt'),
    ('-L -n -t 10.0.0.1:443', 'table',
     list_service([s for s in SERVICES if s['addr'] == '10.0.0.1' and s['port'] == 443][0], N),
     'service.txt'),
    ('-L -n -c', 'conns', list_conn(N), 'conns.txt'),
    ('-L -n -c --persistent-conn', 'conns', list_conn(N | FMT_PERSISTENTCONN), 'conns_persistent.txt'),
    ('-L --timeout', 'timeouts', 'Timeout (tcp tcpfin udp): %d %d %d\n' % (900, 120, 300), 'timeout.txt'),
    ('-S -n', 'table', list_all(N | FMT_RULE), 'save.txt'),
    ('-L', 'table', list_all(0), 'list_names.txt'),
    ('-S', 'table', list_all(FMT_RULE), 'save_names.txt'),
    ('-L -c', 'conns', list_conn(0), 'conns_names.txt'),
]

def main():
    def dump(name, obj):
        with open(os.path.join(HERE, name), 'w') as f:
            json.dump(obj, f, indent=1)
            f.write('\n')
    dump('table.json', {'result': 'services', 'table_size': 4096,
                        'services': [svc_json(s) for s in SERVICES]})
    dump('conns.json', {'result': 'connections', 'conns': CONNS})
    dump('cases.json', [{'args': a, 'reply': r, 'golden': g} for a, r, _, g in CASES])
    for name, text in (('hosts', HOSTS), ('services', SERVICES_FILE)):
        with open(os.path.join(HERE, name), 'w') as f:
            f.write(text)
    for _, _, text, g in CASES:
        with open(os.path.join(HERE, g), 'w') as f:
            f.write(text)

if __name__ == '__main__':
    main()
